"""BIDS: the inputs a run reads (:mod:`~bgs_app.bids.inputs`) and the names of everything
it writes (:mod:`~bgs_app.bids.derivatives`)."""
