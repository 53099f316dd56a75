"""Genotypes: reading with bed-reader, ID matching, QC and PCs that agree with PLINK 2."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bgs_app.genetics import default_panel, genetic_pcs, load_genotypes
from bgs_app.genetics.plink import GenotypeError
from tests.conftest import SHARED

KG = SHARED / "genotypes" / "1kg_phase1_thinned"
PLINK2 = shutil.which("plink2")
needs_plink2 = pytest.mark.skipif(PLINK2 is None, reason="plink2 is not installed "
                                  "(apt-get install plink2)")
needs_1kg = pytest.mark.skipif(not KG.with_suffix(".bed").is_file(),
                               reason="../shared/testdata/genotypes is absent")


def plink2(args: list[str], out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([PLINK2, *args, "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return out


def read_plink_table(path: Path) -> pd.DataFrame:
    ids = {"#FID": str, "FID": str, "#IID": str, "IID": str}
    return pd.read_csv(path, sep="\t", dtype=ids).rename(columns=lambda c: c.lstrip("#"))


@pytest.fixture(scope="module")
def qc_fileset(tmp_path_factory) -> Path:
    """A PLINK fileset with every QC problem: missing people, missing SNPs, rare,
    monomorphic and HWE-violating SNPs."""
    from bed_reader import to_bed

    rng = np.random.default_rng(3)
    n, m = 400, 60
    freqs = rng.uniform(0.02, 0.5, m)
    g = rng.binomial(2, freqs, (n, m)).astype(np.float32)
    g[:, 0] = 0  # monomorphic
    g[:, 1] = rng.binomial(2, 0.004, n)  # rare
    g[:, 2] = np.where(rng.random(n) < 0.4, 2, 0)  # no heterozygotes
    g[rng.random((n, m)) < 0.02] = np.nan
    g[:, 3][rng.random(n) < 0.15] = np.nan  # low call rate
    g[:10][rng.random((10, m)) < 0.3] = np.nan  # people with many missing calls
    prefix = tmp_path_factory.mktemp("qc") / "qc"
    iids = [f"{i:04d}" for i in range(n)]
    to_bed(prefix.with_suffix(".bed"), g, properties={
        "fid": iids, "iid": iids, "sid": [f"rs{1000 + j}" for j in range(m)],
        "chromosome": ["1"] * m, "bp_position": list(range(1000, 1000 + m)),
        "allele_1": ["A"] * m, "allele_2": ["G"] * m})
    return prefix


def _compare_with_plink2(prefix: Path, tmp_path: Path):
    ours = load_genotypes(prefix, maf=None, geno=None, hwe=None, mind=None)
    ref = plink2(["--bfile", str(prefix), "--freq", "--missing", "--hardy"], tmp_path / "ref")
    afreq = read_plink_table(ref.with_suffix(".afreq")).set_index("ID")
    vmiss = read_plink_table(ref.with_suffix(".vmiss")).set_index("ID")
    hardy = read_plink_table(ref.with_suffix(".hardy")).set_index("ID")
    snp = ours.snp_qc.set_index("snp")
    # PLINK 2 reads .bim column 5 (our counted A1) as ALT.
    assert (afreq.loc[snp.index, "ALT"] == snp["a1"]).all()
    ok = afreq["ALT_FREQS"].notna()
    np.testing.assert_allclose(snp.loc[ok[ok].index, "a1_freq"],
                               afreq.loc[ok, "ALT_FREQS"], rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(1 - snp["call_rate"], vmiss.loc[snp.index, "F_MISS"],
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(snp["hwe_p"], hardy.loc[snp.index, "P"], rtol=1e-4,
                               atol=1e-300)


def _kept_sets_match(prefix: Path, tmp_path: Path, **thresholds):
    ours = load_genotypes(prefix, **thresholds)
    flags = []
    for name, value in thresholds.items():
        flags += [f"--{name}", f"{value:g}"]
    ref = plink2(["--bfile", str(prefix), *flags, "--write-snplist", "--write-samples"],
                 tmp_path / "qc")
    kept_snps = ref.with_suffix(".snplist").read_text().split()
    kept_people = read_plink_table(ref.with_suffix(".id"))["IID"].astype(str).tolist()
    assert ours.dosages.columns.tolist() == kept_snps
    assert sorted(ours.dosages.index.str[4:]) == sorted(kept_people)
    return ours


@needs_plink2
@needs_1kg
def test_frequencies_missingness_hwe_equal_plink2_on_1000_genomes(tmp_path):
    _compare_with_plink2(KG, tmp_path)


@needs_plink2
def test_frequencies_missingness_hwe_equal_plink2_on_simulated(qc_fileset, tmp_path):
    _compare_with_plink2(qc_fileset, tmp_path)


@needs_plink2
def test_kept_snps_and_people_equal_plink2(qc_fileset, tmp_path):
    ours = _kept_sets_match(qc_fileset, tmp_path, maf=0.01, geno=0.1, hwe=1e-6, mind=0.1)
    reasons = ours.snp_qc.set_index("snp")["reason"]
    assert reasons["rs1000"] == "monomorphic"
    assert "--maf" in reasons["rs1001"] and "--hwe" in reasons["rs1002"]
    assert "--geno" in reasons["rs1003"]
    dropped = ours.person_qc[~ours.person_qc["kept"]]
    assert len(dropped) > 0 and dropped["reason"].str.contains("--mind").all()
    _kept_sets_match(qc_fileset, tmp_path / "b", maf=0.05, geno=0.02, hwe=1e-3, mind=0.05)


@needs_plink2
@needs_1kg
def test_kept_sets_equal_plink2_on_1000_genomes(tmp_path):
    _kept_sets_match(KG, tmp_path, maf=0.05, geno=0.1, hwe=1e-6, mind=0.1)


@needs_plink2
@needs_1kg
def test_pcs_agree_with_plink2(tmp_path):
    ref = plink2(["--bfile", str(KG), "--pca", "4"], tmp_path / "pca")
    theirs = read_plink_table(ref.with_suffix(".eigenvec")).set_index("IID")
    ours = genetic_pcs(KG, 4, min_maf=0.0)
    ours.index = ours.index.str[4:]
    for k in range(1, 5):
        r = np.corrcoef(ours.loc[theirs.index, f"PC{k}"], theirs[f"PC{k}"])[0, 1]
        assert abs(r) >= 0.99, (k, r)


def test_reads_only_what_is_asked(qc_fileset):
    labels = [f"sub-{i:04d}" for i in range(20, 40)] + ["sub-9999"]
    g = load_genotypes(qc_fileset, snps=["rs1010", "rs1020", "rs404"], participants=labels,
                       maf=None, hwe=None, geno=None, mind=None)
    assert g.dosages.columns.tolist() == ["rs1010", "rs1020"]
    assert len(g.dosages) == 20 and g.dosages.index[0] == "sub-0020"
    qc = g.snp_qc.set_index("snp")
    assert qc.loc["rs404", "reason"] == "not in the .bim file"
    assert g.summary["mri_only"] == 1 and g.summary["genotype_only"] == 380
    assert g.counted_allele["rs1010"] == "A"
    values = set(np.unique(g.dosages.to_numpy()[~np.isnan(g.dosages.to_numpy())]))
    assert values <= {0.0, 1.0, 2.0}


def test_excluded_participants_are_listed_with_their_reason(qc_fileset):
    labels = [f"sub-{i:04d}" for i in range(20, 30)]
    reason = "excluded by --exclude-label"
    g = load_genotypes(qc_fileset, snps=["rs1010"], participants=labels[1:],
                       excluded={labels[0]: reason, "sub-9998": reason},
                       maf=None, hwe=None, geno=None, mind=None)
    assert labels[0] not in g.dosages.index and len(g.dosages) == 9
    rows = g.person_qc.set_index("participant_id").loc[[labels[0], "sub-9998"]]
    assert rows["reason"].tolist() == [reason, reason] and not rows["kept"].any()
    assert rows["iid"].tolist()[0] == "0020"  # genotyped: its IID is kept
    assert g.summary["excluded"] == 2 and g.summary["matched"] == 9
    assert g.summary["genotype_only"] == 390


def test_id_matching_with_prefix_and_map(qc_fileset, tmp_path):
    with_prefix = load_genotypes(qc_fileset, snps=["rs1010"], participants=["0025", "sub-0026"])
    assert with_prefix.dosages.index.tolist() == ["sub-0025", "sub-0026"]
    id_map = tmp_path / "map.tsv"
    id_map.write_text("participant_id\tiid\nsub-alpha\t0027\nsub-beta\t0028\n")
    mapped = load_genotypes(qc_fileset, snps=["rs1010"], participants=["alpha", "beta"],
                            id_map=id_map)
    assert mapped.dosages.index.tolist() == ["sub-alpha", "sub-beta"]


def test_bad_inputs_give_clear_messages(qc_fileset, tmp_path):
    for ext in (".bim", ".fam"):
        broken = tmp_path / ext[1:] / "x"
        broken.parent.mkdir()
        for e in (".bed", ".bim", ".fam"):
            if e != ext:
                shutil.copy(qc_fileset.with_suffix(e), broken.with_suffix(e))
        with pytest.raises(GenotypeError, match=f"x{ext} not found"):
            load_genotypes(broken)
    truncated = tmp_path / "trunc" / "t"
    truncated.parent.mkdir()
    for e in (".bim", ".fam"):
        shutil.copy(qc_fileset.with_suffix(e), truncated.with_suffix(e))
    data = qc_fileset.with_suffix(".bed").read_bytes()
    truncated.with_suffix(".bed").write_bytes(data[: len(data) // 2])
    with pytest.raises(GenotypeError, match="truncated or corrupt"):
        load_genotypes(truncated)
    with pytest.raises(GenotypeError, match="no genotyped person matches"):
        load_genotypes(qc_fileset, participants=["nobody", "noone"])
    with pytest.raises(GenotypeError, match="none of the requested SNPs"):
        load_genotypes(qc_fileset, snps=["rs1", "rs2"])
    dup = tmp_path / "dup" / "d"
    dup.parent.mkdir()
    shutil.copy(qc_fileset.with_suffix(".bed"), dup.with_suffix(".bed"))
    shutil.copy(qc_fileset.with_suffix(".bim"), dup.with_suffix(".bim"))
    fam = qc_fileset.with_suffix(".fam").read_text().splitlines()
    fam[1] = fam[0]
    dup.with_suffix(".fam").write_text("\n".join(fam) + "\n")
    with pytest.raises(GenotypeError, match="duplicate IIDs"):
        load_genotypes(dup)


def test_default_panel_has_sources(tmp_path):
    from bgs_app.genetics.api import read_snp_list

    listed = tmp_path / "snps.txt"
    listed.write_text("# chosen SNPs\nrs945270\n\nrs7412 APOE e2\n")
    assert read_snp_list(listed) == ["rs945270", "rs7412"]
    panel = default_panel()
    assert {"rs945270", "rs429358", "rs7412", "rs10784502"} <= set(panel["snp"])
    assert panel["source"].str.len().gt(10).all()


def test_simulated_study_qc_drops_planted_failures(sim_study):
    parts = pd.read_csv(sim_study / "participants.tsv", sep="\t")
    g = load_genotypes(sim_study / "genetics/study", participants=parts["participant_id"])
    dropped = set(g.snp_qc.loc[~g.snp_qc["kept"], "snp"])
    assert dropped == {"simrare1", "simmono1", "simlowcall1", "simhwe1"}
    assert g.summary["mri_only"] > 0 and g.summary["genotype_only"] > 0


def test_alleles_are_aligned_to_a_model_or_refused():
    from bgs_app.errors import BgsError
    from bgs_app.genetics.alleles import align_to_model

    model = pd.DataFrame({"counted_allele": ["A", "G", "A", "C"],
                          "other_allele": ["C", "T", "T", "G"],
                          "counted_allele_freq": [0.3, 0.2, 0.2, 0.45]},
                         index=["rs1", "rs2", "rs3", "rs4"])

    def site(rows):
        return pd.DataFrame(rows, columns=["counted_allele", "other_allele",
                                           "counted_allele_freq"],
                            index=[f"rs{i + 1}" for i in range(len(rows))])

    flipped, aligned = align_to_model(model.iloc[:3], site([("A", "C", 0.31),
                                                            ("T", "G", 0.78),
                                                            ("A", "T", 0.22)]))
    assert flipped == ["rs2"]  # A1/A2 swapped: flip, and say so
    assert aligned.loc["rs2", "counted_allele"] == "G"
    assert aligned.loc["rs2", "counted_allele_freq"] == pytest.approx(0.22)
    # A strand-ambiguous SNP is kept only when the frequencies settle it.
    with pytest.raises(BgsError, match=r"rs3 \(strand-ambiguous A/T"):
        align_to_model(model.iloc[:3], site([("A", "C", 0.3), ("G", "T", 0.2),
                                             ("A", "T", 0.75)]))
    with pytest.raises(BgsError, match=r"rs4 \(strand-ambiguous C/G.*model 0.45"):
        align_to_model(model, site([("A", "C", 0.3), ("G", "T", 0.2), ("A", "T", 0.2),
                                    ("C", "G", 0.45)]))
    # Alleles that match neither way: refused with both pairs named.
    with pytest.raises(BgsError, match=r"rs1 \(model A/C, site G/T\)"):
        align_to_model(model.iloc[:1], site([("G", "T", 0.3)]))
