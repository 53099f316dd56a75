"""Statistics: associations of scores with cognition, multiple testing, the IDP baseline.

Works on tables; imports neither ``model`` nor ``workflows``.
"""

from bgs_app.stats.associations import adjust, associate, associate_sources
from bgs_app.stats.metrics import genotype_metrics
from bgs_app.stats.phenotypes import load_phenotypes

__all__ = ["adjust", "associate", "associate_sources", "genotype_metrics", "load_phenotypes"]
