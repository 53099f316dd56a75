"""PLINK 2 and BGEN inputs: round trips against plink2's own conversions, dosage QC as
plink2 computes it, --keep/--remove, --min-info."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bgs_app.genetics import load_genotypes
from bgs_app.genetics.plink import GenotypeError
from bgs_app.genetics.readers import open_genotypes, probabilities_from_dosage
from tests.test_genetics import PLINK2, needs_plink2, plink2, qc_fileset, read_plink_table

__all__ = ["qc_fileset"]
QC_COLUMNS = ["snp", "chrom", "pos", "a1", "a2", "a1_freq", "call_rate", "hwe_p", "kept",
              "reason"]


@pytest.fixture(scope="module")
def dosage_files(tmp_path_factory):
    """plink2's dummy data with dosages, as PGEN and (ref-first) BGEN 1.2."""
    if PLINK2 is None:
        pytest.skip("plink2 is not installed")
    root = tmp_path_factory.mktemp("dosage")
    plink2(["--dummy", "300", "40", "0.05", "dosage-freq=0.3", "--seed", "3",
            "--make-pgen"], root / "d")
    plink2(["--pfile", str(root / "d"), "--export", "bgen-1.2", "ref-first", "bits=16"],
           root / "d")
    plink2(["--pfile", str(root / "d"), "--freq", "cols=+machr2", "--missing",
            "variant-only", "--hardy"], root / "d")
    return root


@needs_plink2
def test_hard_calls_equal_across_formats(qc_fileset, tmp_path):
    """The same hard calls as .bed, as plink2's .pgen and as its BGEN: same dosages and QC."""
    plink2(["--bfile", str(qc_fileset), "--make-pgen"], tmp_path / "qc")
    plink2(["--bfile", str(qc_fileset), "--export", "bgen-1.2", "ref-first", "bits=8"],
           tmp_path / "qc")
    bed = load_genotypes(qc_fileset)
    for path in (tmp_path / "qc.pgen", tmp_path / "qc.bgen"):
        other = load_genotypes(path, index_dir=tmp_path / "index")
        assert list(other.dosages.columns) == list(bed.dosages.columns)
        np.testing.assert_allclose(other.dosages.to_numpy(),
                                   bed.dosages.reindex(other.dosages.index).to_numpy(),
                                   atol=1e-3)
        pd.testing.assert_frame_equal(other.snp_qc[QC_COLUMNS], bed.snp_qc[QC_COLUMNS],
                                      check_dtype=False, atol=1e-6)
        assert other.person_qc["kept"].sum() == bed.person_qc["kept"].sum()
    assert bed.dosage_kind == "hard calls"
    onehot = bed.probabilities
    called = ~np.isnan(bed.dosages.to_numpy())
    assert np.allclose(onehot[called].max(axis=-1), 1.0)


@needs_plink2
def test_pgen_and_bgen_dosages_agree(dosage_files):
    pgen = load_genotypes(dosage_files / "d.pgen", maf=None, geno=None, hwe=None, mind=None)
    bgen = load_genotypes(dosage_files / "d.bgen", maf=None, geno=None, hwe=None, mind=None,
                          index_dir=dosage_files / "index")
    assert pgen.dosage_kind == "dosages" and bgen.dosage_kind == "probabilities"
    d = pgen.dosages.to_numpy()
    assert np.nanmax(np.abs(d - np.round(d))) > 0.2  # real dosages, not hard calls
    np.testing.assert_allclose(bgen.dosages.reindex(pgen.dosages.index).to_numpy(), d,
                               atol=1e-3)
    # The PGEN's probabilities are those plink2 wrote into the BGEN.
    np.testing.assert_allclose(bgen.probabilities, pgen.probabilities, atol=1e-3)
    assert np.allclose(np.nansum(pgen.probabilities, axis=-1)[~np.isnan(d)], 1.0)


@needs_plink2
def test_dosage_qc_equals_plink2(dosage_files):
    """Frequency, imputation r², missing rate and HWE p as plink2 --freq/--missing/--hardy."""
    g = load_genotypes(dosage_files / "d.pgen", maf=None, geno=None, hwe=None, mind=None)
    qc = g.snp_qc.set_index("snp")
    freq = read_plink_table(dosage_files / "d.afreq").set_index("ID")
    miss = read_plink_table(dosage_files / "d.vmiss").set_index("ID")
    hardy = read_plink_table(dosage_files / "d.hardy").set_index("ID")
    np.testing.assert_allclose(qc["a1_freq"], freq.loc[qc.index, "ALT_FREQS"], rtol=1e-4)
    np.testing.assert_allclose(qc["info"], freq.loc[qc.index, "MACH_R2"], rtol=1e-4)
    np.testing.assert_allclose(1 - qc["call_rate"], miss.loc[qc.index, "F_MISS"], atol=1e-5)
    np.testing.assert_allclose(qc["hwe_p"], hardy.loc[qc.index, "P"], rtol=1e-3)


@needs_plink2
def test_min_info_drops_poorly_imputed(dosage_files):
    all_ = load_genotypes(dosage_files / "d.pgen", maf=None, geno=None, hwe=None, mind=None)
    info = all_.snp_qc.set_index("snp")["info"]
    cut = float(info.median())
    g = load_genotypes(dosage_files / "d.pgen", maf=None, geno=None, hwe=None, mind=None,
                       min_info=cut)
    dropped = g.snp_qc[~g.snp_qc["kept"]]
    assert set(dropped["snp"]) == set(info.index[info < cut])
    assert dropped["reason"].str.contains("--min-info").all()


def test_keep_and_remove(qc_fileset, tmp_path):
    keep = tmp_path / "keep.txt"
    keep.write_text("#FID IID\n" + "".join(f"{i:04d} {i:04d}\n" for i in range(20, 80)))
    remove = tmp_path / "remove.txt"
    remove.write_text("0025\n0026\n")
    g = load_genotypes(qc_fileset, keep=keep, remove=remove)
    kept = set(g.dosages.index)
    assert kept <= {f"sub-{i:04d}" for i in range(20, 80)} - {"sub-0025", "sub-0026"}
    reasons = g.person_qc.set_index("participant_id")["reason"]
    assert "--remove" in reasons["sub-0025"]
    assert "--keep" in reasons["sub-0100"]
    assert g.summary["excluded"] == 400 - 60 + 2
    with pytest.raises(GenotypeError, match="no such ID file"):
        load_genotypes(qc_fileset, keep=tmp_path / "absent.txt")


def test_probabilities_from_dosage():
    p = probabilities_from_dosage(np.array([0.0, 0.3, 1.0, 1.6, 2.0, np.nan]))
    np.testing.assert_allclose(p[:5] @ np.array([0.0, 1.0, 2.0]), [0, 0.3, 1, 1.6, 2],
                               atol=1e-6)
    np.testing.assert_allclose(p[1], [0.7, 0.3, 0.0], atol=1e-6)
    np.testing.assert_allclose(p[3], [0.0, 0.4, 0.6], atol=1e-6)
    assert np.isnan(p[5]).all()


def test_ambiguous_or_missing_prefix(tmp_path):
    with pytest.raises(GenotypeError, match="no .bed"):
        open_genotypes(tmp_path / "nothing")
    (tmp_path / "x.bed").write_bytes(b"")
    (tmp_path / "x.bgen").write_bytes(b"")
    with pytest.raises(GenotypeError, match="several genotype formats"):
        open_genotypes(tmp_path / "x")
    with pytest.raises(GenotypeError, match="unreadable BGEN"):
        open_genotypes(tmp_path / "x.bgen")


@needs_plink2
def test_geno_and_mind_count_only_absent_dosages(dosage_files, tmp_path):
    """An imputed dosage far from an integer is uncertain, not missing: --geno/--mind
    keep what plink2 --geno dosage / --mind dosage keep."""
    plink2(["--pfile", str(dosage_files / "d"), "--mind", "0.04", "dosage", "--geno",
            "0.04", "dosage", "--write-snplist", "--write-samples"], tmp_path / "kept")
    ours = load_genotypes(dosage_files / "d.pgen", maf=None, hwe=None, geno=0.04, mind=0.04)
    snps = set((tmp_path / "kept.snplist").read_text().split())
    people = set(read_plink_table(tmp_path / "kept.id")["IID"])
    assert set(ours.snp_qc.loc[ours.snp_qc["kept"], "snp"]) == snps
    kept = ours.person_qc[ours.person_qc["kept"]]
    assert set(kept["iid"]) == people
    # Counted as plink2 counts hard calls, most of these people would fail --mind 0.04.
    assert (1 - ours.person_qc["call_rate"] > 0.04).mean() > 0.5
