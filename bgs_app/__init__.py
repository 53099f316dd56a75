"""bgs_app: brain-genotype scores from T1-weighted MRI, as a BIDS-App."""

from bgs_app.__about__ import __version__

__all__ = ["__version__"]
