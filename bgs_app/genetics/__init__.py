"""Genotypes: PLINK input (bed-reader), ID matching, QC that agrees with PLINK 2, genetic PCs.

Public API: :func:`load_genotypes`, :func:`genetic_pcs`, :func:`default_panel`.
This package works on tables and files; it imports neither ``model`` nor ``workflows``.
"""

from bgs_app.genetics.api import Genotypes, default_panel, load_genotypes
from bgs_app.genetics.pca import genetic_pcs

__all__ = ["Genotypes", "default_panel", "genetic_pcs", "load_genotypes"]
