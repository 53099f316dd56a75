"""Genotype files of three formats behind one reader: PLINK 1 (.bed, bed-reader), PLINK 2
(.pgen, pgenlib) and BGEN 1.2 (.bgen with .sample, cbgen).

Every reader gives the same variant table (``chrom, snp, cm, pos, a1, a2``; A1 is the
counted allele), the same sample table (``fid, iid, sex``) and reads chosen people x chosen
SNPs as dosages of A1 (float, NaN missing) with the three genotype probabilities
P(0, 1, 2 copies of A1). The counted allele is PLINK 1's A1 (.bim column 5), PLINK 2's
ALT, and BGEN's second allele (the ALT allele of UK Biobank's ref-first files; what
``plink2 --export bgen-1.2 ref-first`` writes). A PGEN holds dosages only; their
probabilities are those ``plink2 --export bgen-1.2`` writes for them (no heterozygote
probability beyond what the dosage needs: P1 = 1 - |d - 1|).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bgs_app.genetics.plink import (
    GenotypeError,
    PlinkFiles,
    check_bed,
    read_bim,
    read_dosages,
    read_fam,
)

#: File extensions of each format, in the order a bare prefix is tried.
FORMATS = {".bed": "bed", ".pgen": "pgen", ".bgen": "bgen"}


def probabilities_from_dosage(dosage: np.ndarray) -> np.ndarray:
    """P(0), P(1), P(2) for dosages in [0, 2] with the least heterozygote mass needed.

    Hard calls give one-hot rows; NaN gives a NaN row. This is how ``plink2`` exports a
    dosage it holds without probabilities.

    Parameters
    ----------
    dosage : numpy.ndarray
        Any shape.

    Returns
    -------
    numpy.ndarray
        ``dosage.shape + (3,)``, float32.
    """
    d = np.clip(np.asarray(dosage, np.float32), 0.0, 2.0)
    p0 = np.maximum(1.0 - d, 0.0)
    p2 = np.maximum(d - 1.0, 0.0)
    out = np.stack([p0, 1.0 - p0 - p2, p2], axis=-1).astype(np.float32)
    out[np.isnan(dosage)] = np.nan
    return out


@dataclass
class GenotypeFile:
    """An opened genotype file: its tables, and reads of people x SNPs.

    Attributes
    ----------
    path : pathlib.Path
        The main file (.bed, .pgen or .bgen).
    kind : str
        ``bed``, ``pgen`` or ``bgen``.
    variants : pandas.DataFrame
        ``chrom, snp, cm, pos, a1, a2`` (A1 counted), in file order.
    samples : pandas.DataFrame
        ``fid, iid, sex`` in file order.
    """

    path: Path
    kind: str
    variants: pd.DataFrame
    samples: pd.DataFrame
    _index_dir: Path | None = field(default=None, repr=False)
    _offsets: np.ndarray | None = field(default=None, repr=False)

    @property
    def dosage_kind(self) -> str:
        """``hard calls`` (PLINK 1), ``dosages`` (PLINK 2) or ``probabilities`` (BGEN)."""
        return {"bed": "hard calls", "pgen": "dosages", "bgen": "probabilities"}[self.kind]

    def read(self, rows: np.ndarray, cols: np.ndarray, num_threads: int | None = None
             ) -> tuple[np.ndarray, np.ndarray]:
        """Dosages and genotype probabilities of people ``rows`` at variants ``cols``.

        Parameters
        ----------
        rows : numpy.ndarray
            Sample indices, increasing.
        cols : numpy.ndarray
            Variant indices (any order).
        num_threads : int, optional
            Threads (PLINK 1 only).

        Returns
        -------
        dosage : numpy.ndarray
            (len(rows), len(cols)) float32, A1 counts, NaN missing.
        probabilities : numpy.ndarray
            (len(rows), len(cols), 3) float32, NaN rows where missing.
        """
        rows = np.asarray(rows, np.int64)
        cols = np.asarray(cols, np.int64)
        if self.kind == "bed":
            files = PlinkFiles.from_prefix(self.path)
            order = np.argsort(cols)
            values = read_dosages(files, rows, cols[order], len(self.samples),
                                  len(self.variants), num_threads)
            dosage = values[:, np.argsort(order)]
            return dosage, probabilities_from_dosage(dosage)
        if self.kind == "pgen":
            dosage = self._read_pgen(rows, cols)
            return dosage, probabilities_from_dosage(dosage)
        probs = self._read_bgen(rows, cols)
        dosage = (probs[..., 1] + 2.0 * probs[..., 2]).astype(np.float32)
        return dosage, probs

    def _read_pgen(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        import pgenlib

        if not len(cols) or not len(rows):
            return np.zeros((len(rows), len(cols)), np.float32)
        reader = pgenlib.PgenReader(str(self.path).encode(), raw_sample_ct=len(self.samples),
                                    sample_subset=rows.astype(np.uint32))
        try:
            out = np.empty((len(cols), len(rows)), np.float64)
            order = np.argsort(cols)
            reader.read_dosages_list(cols[order].astype(np.uint32), out)
        finally:
            reader.close()
        values = np.empty_like(out)
        values[order] = out
        values[values < 0] = np.nan  # pgenlib's -9
        return values.T.astype(np.float32)

    def _read_bgen(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        from cbgen import bgen_file

        out = np.full((len(rows), len(cols), 3), np.nan, np.float32)
        with bgen_file(str(self.path)) as bgen:
            for j, col in enumerate(cols):
                genotype = bgen.read_genotype(int(self._offsets[col]))
                prob = np.asarray(genotype.probability, np.float64)
                if prob.shape[1] != 3 or genotype.phased:
                    raise GenotypeError(
                        f"{self.path}: variant {self.variants['snp'].iloc[col]} is not an "
                        "unphased diploid biallelic variant (3 genotype probabilities)")
                out[:, j] = prob[rows]
        return out


def _strip_prefix(path: Path) -> tuple[Path, str | None]:
    for ext, kind in FORMATS.items():
        if path.suffix == ext:
            return path.with_suffix(""), kind
    if path.suffix in (".bim", ".fam"):
        return path.with_suffix(""), "bed"
    if path.suffix in (".pvar", ".psam"):
        return path.with_suffix(""), "pgen"
    return path, None


def resolve_genotype_path(path: str | Path) -> tuple[Path, str]:
    """The main file and format of ``--genotypes`` (a file, or a prefix of one format).

    Raises
    ------
    GenotypeError
        Nothing of a known format at ``path``, or a bare prefix that fits several.
    """
    prefix, kind = _strip_prefix(Path(path))
    if kind is None:
        found = [(prefix.with_name(prefix.name + ext), k) for ext, k in FORMATS.items()
                 if prefix.with_name(prefix.name + ext).is_file()]
        if len(found) > 1:
            raise GenotypeError(f"{path}: several genotype formats share this prefix "
                                f"({', '.join(p.name for p, _ in found)}); give the file")
        if not found:
            raise GenotypeError(
                f"{path}: no .bed/.bim/.fam (PLINK 1), .pgen/.pvar/.psam (PLINK 2) or "
                ".bgen (BGEN 1.2, with .sample) file here; --genotypes takes a file or "
                "the prefix of one of these")
        return found[0]
    ext = {v: k for k, v in FORMATS.items()}[kind]
    return prefix.with_name(prefix.name + ext), kind


def open_genotypes(path: str | Path, index_dir: str | Path | None = None) -> GenotypeFile:
    """Open a PLINK 1, PLINK 2 or BGEN 1.2 file (chosen by extension) and read its tables.

    Parameters
    ----------
    path : path-like
        ``X.bed``/``X.pgen``/``X.bgen``, or the prefix ``X`` of exactly one of them.
    index_dir : path-like, optional
        Where a BGEN's variant index (cbgen metafile) is kept and reused; a temporary
        folder when not given.

    Returns
    -------
    GenotypeFile

    Raises
    ------
    GenotypeError
        A file is missing, truncated or unreadable.
    """
    main, kind = resolve_genotype_path(path)
    if kind == "bed":
        files = PlinkFiles.from_prefix(main)
        bim, fam = read_bim(files), read_fam(files)
        check_bed(files, len(fam), len(bim))
        return GenotypeFile(main, kind, bim, fam[["fid", "iid", "sex"]])
    if not main.is_file():
        raise GenotypeError(f"{main} not found")
    if kind == "pgen":
        return _open_pgen(main)
    return _open_bgen(main, index_dir)


def _header_table(path: Path, kind: str) -> pd.DataFrame:
    if not path.is_file():
        raise GenotypeError(f"{path} not found (the {kind} file beside the genotypes)")
    with open(path) as fh:
        lines = [line for line in fh if not line.startswith("##")]
    if not lines or not lines[0].startswith("#"):
        raise GenotypeError(f"{path}: a {kind} file needs a '#' header line")
    header = lines[0][1:].split()
    rows = [line.split() for line in lines[1:] if line.strip()]
    bad = [i for i, r in enumerate(rows) if len(r) != len(header)]
    if bad:
        raise GenotypeError(f"{path}: line {bad[0] + 2} has a different number of columns "
                            "from the header")
    return pd.DataFrame(rows, columns=header, dtype=str)


def _open_pgen(main: Path) -> GenotypeFile:
    import pgenlib

    pvar = _header_table(main.with_suffix(".pvar"), ".pvar")
    psam = _header_table(main.with_suffix(".psam"), ".psam")
    need = {"CHROM", "POS", "ID", "REF", "ALT"}
    if not need <= set(pvar.columns):
        raise GenotypeError(f"{main.with_suffix('.pvar')}: needs columns "
                            f"{', '.join(sorted(need))}")
    if "IID" not in psam.columns:
        raise GenotypeError(f"{main.with_suffix('.psam')}: needs an IID column")
    try:
        reader = pgenlib.PgenReader(str(main).encode(), raw_sample_ct=len(psam))
        n_variants = reader.get_variant_ct()
        reader.close()
    except Exception as err:  # pgenlib raises RuntimeError with its own text
        raise GenotypeError(f"{main}: unreadable PLINK 2 .pgen ({err})") from err
    if n_variants != len(pvar):
        raise GenotypeError(f"{main}: {n_variants} variants, but the .pvar lists {len(pvar)}")
    variants = pd.DataFrame({
        "chrom": pvar["CHROM"], "snp": pvar["ID"],
        "cm": pvar["CM"] if "CM" in pvar else "0",
        "pos": pd.to_numeric(pvar["POS"], errors="coerce").astype("Int64"),
        "a1": pvar["ALT"], "a2": pvar["REF"]})
    samples = pd.DataFrame({"fid": psam["FID"] if "FID" in psam else psam["IID"],
                            "iid": psam["IID"],
                            "sex": psam["SEX"] if "SEX" in psam else "0"})
    return GenotypeFile(main, "pgen", variants, samples)


def _bgen_samples(main: Path, embedded: list[str] | None) -> pd.DataFrame:
    sample = main.with_suffix(".sample")
    if sample.is_file():
        table = pd.read_csv(sample, sep=r"\s+", dtype=str)
        if not {"ID_1", "ID_2"} <= set(table.columns):
            raise GenotypeError(f"{sample}: a .sample file needs ID_1 and ID_2 columns")
        table = table.iloc[1:]  # the column-type line (0 0 0 D ...)
        return pd.DataFrame({"fid": table["ID_1"].to_numpy(), "iid": table["ID_2"].to_numpy(),
                             "sex": table["sex"].to_numpy() if "sex" in table else "0"})
    if embedded is None:
        raise GenotypeError(f"{main}: no sample identifiers in the file and no {sample.name} "
                            "beside it")
    return pd.DataFrame({"fid": embedded, "iid": embedded, "sex": "0"})


def _open_bgen(main: Path, index_dir: str | Path | None) -> GenotypeFile:
    from cbgen import bgen_file, bgen_metafile

    try:
        bgen = bgen_file(str(main))
    except Exception as err:
        raise GenotypeError(f"{main}: unreadable BGEN file ({err})") from err
    with bgen:
        embedded = ([s.decode() if isinstance(s, bytes) else str(s)
                     for s in bgen.read_samples()] if bgen.contain_samples else None)
        n_samples = bgen.nsamples
        stat = main.stat()
        key = hashlib.sha1(f"{main.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode())
        folder = Path(index_dir) if index_dir is not None else Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        metafile = folder / f"{main.stem}.{key.hexdigest()[:12]}.metafile"
        if not metafile.is_file():
            partial = metafile.with_suffix(".partial")
            partial.unlink(missing_ok=True)  # left by a killed run
            bgen.create_metafile(str(partial), verbose=False)
            partial.replace(metafile)
    samples = _bgen_samples(main, embedded)
    if len(samples) != n_samples:
        raise GenotypeError(f"{main}: {n_samples} samples, but {main.with_suffix('.sample')}"
                            f" lists {len(samples)}")
    chrom, rsid, pos, a1, a2, offsets = [], [], [], [], [], []
    with bgen_metafile(str(metafile)) as meta:
        for part in range(meta.npartitions):
            v = meta.read_partition(part).variants
            chrom += [c.decode() if isinstance(c, bytes) else str(c) for c in v.chromosome]
            rsid += [r.decode() if isinstance(r, bytes) else str(r) for r in v.rsid]
            pos += list(np.asarray(v.position, np.int64))
            for alleles in v.allele_ids:
                alleles = (alleles.decode() if isinstance(alleles, bytes) else str(alleles))
                first, _, second = alleles.partition(",")
                a2.append(first)
                a1.append(second)  # "C,G" when multi-allelic: QC drops it
            offsets += list(np.asarray(v.offset, np.int64))
    variants = pd.DataFrame({"chrom": chrom, "snp": rsid, "cm": "0",
                             "pos": pd.array(pos, dtype="Int64"), "a1": a1, "a2": a2})
    return GenotypeFile(main, "bgen", variants, samples, folder, np.asarray(offsets))
