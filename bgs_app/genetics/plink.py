"""PLINK 1 binary filesets read with bed-reader: checks, metadata, selective reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from bgs_app.errors import BgsError


class GenotypeError(BgsError):
    """Genotype input that cannot be used (missing files, no overlap, ...)."""


@dataclass(frozen=True)
class PlinkFiles:
    """The three files of a PLINK 1 binary fileset."""

    bed: Path
    bim: Path
    fam: Path

    @classmethod
    def from_prefix(cls, prefix: str | Path) -> PlinkFiles:
        """Locate ``PREFIX.bed/.bim/.fam`` (a trailing ``.bed`` is accepted) and check them."""
        prefix = Path(prefix)
        if prefix.suffix in (".bed", ".bim", ".fam"):
            prefix = prefix.with_suffix("")
        files = cls(*(prefix.with_name(prefix.name + ext) for ext in (".bed", ".bim", ".fam")))
        missing = [p.name for p in (files.bed, files.bim, files.fam) if not p.is_file()]
        if missing:
            raise GenotypeError(
                f"PLINK fileset {prefix}: {', '.join(missing)} not found; --genotypes takes "
                "the prefix of a .bed/.bim/.fam fileset (PLINK 1 binary)")
        return files


def _read_table(path: Path, columns: list[str], kind: str) -> pd.DataFrame:
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, dtype=str, engine="c")
    except (pd.errors.EmptyDataError, pd.errors.ParserError) as err:
        raise GenotypeError(f"{path}: unreadable {kind} file ({err})") from err
    if table.shape[1] != len(columns):
        raise GenotypeError(f"{path}: a {kind} file has {len(columns)} columns, this one has "
                            f"{table.shape[1]}")
    table.columns = columns
    return table


def read_bim(files: PlinkFiles) -> pd.DataFrame:
    """The variant table: ``chrom, snp, cm, pos, a1, a2`` (A1 is the counted allele)."""
    bim = _read_table(files.bim, ["chrom", "snp", "cm", "pos", "a1", "a2"], ".bim")
    bim["pos"] = pd.to_numeric(bim["pos"], errors="coerce").astype("Int64")
    return bim


def read_fam(files: PlinkFiles) -> pd.DataFrame:
    """The sample table: ``fid, iid, father, mother, sex, pheno``."""
    return _read_table(files.fam, ["fid", "iid", "father", "mother", "sex", "pheno"], ".fam")


def check_bed(files: PlinkFiles, n_people: int, n_snps: int) -> None:
    """Refuse a truncated or corrupt .bed (magic bytes, SNP-major mode, exact size)."""
    expected = 3 + ((n_people + 3) // 4) * n_snps
    size = files.bed.stat().st_size
    with open(files.bed, "rb") as fh:
        magic = fh.read(3)
    if magic[:2] != b"\x6c\x1b":
        raise GenotypeError(f"{files.bed}: not a PLINK 1 .bed file (wrong magic bytes)")
    if magic[2:3] != b"\x01":
        raise GenotypeError(f"{files.bed}: individual-major .bed files are not supported; "
                            "convert with plink --make-bed")
    if size != expected:
        raise GenotypeError(
            f"{files.bed}: truncated or corrupt ({size} bytes; {n_people} people x {n_snps} "
            f"SNPs in the .fam/.bim need {expected}). Re-export the fileset.")


def read_dosages(files: PlinkFiles, rows: np.ndarray | None, cols: np.ndarray,
                 n_people: int, n_snps: int, num_threads: int | None = None) -> np.ndarray:
    """Counts of the A1 allele (0/1/2, NaN missing) for the chosen rows and columns only."""
    from bed_reader import open_bed

    # count_A1=True (bed-reader's default): values count the allele in .bim column 5.
    with open_bed(files.bed, iid_count=n_people, sid_count=n_snps, count_A1=True,
                  num_threads=num_threads) as bed:
        index = (np.s_[:] if rows is None else rows, cols)
        return bed.read(index=index, dtype="float32")
