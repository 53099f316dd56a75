"""Group-level orchestration.

The group level (CNN training, scores, saliency, IDP baseline, associations, report)
is being built; its stages live in :mod:`bgs_app.genetics` and :mod:`bgs_app.stats`
already. Until the CNN exists this level refuses to run rather than produce a
partial analysis that looks complete.
"""

from __future__ import annotations

from bgs_app.config import Config
from bgs_app.errors import BgsError


def run_group_level(config: Config) -> int:
    """Run the group level (not available in this version: a clear refusal)."""
    from bgs_app import __version__

    raise BgsError(
        f"the group level is not available in bgs_app {__version__} yet (the CNN, "
        "scores and group report are still to come). The participant level, "
        "bgs_app.genetics.load_genotypes and bgs_app.stats.associate are available now.")
