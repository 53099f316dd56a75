"""The simulator's cohort genetics: sibships (identity by descent, KING table), ancestries
(Balding-Nichols), a genome-wide panel, imputation noise and the three file formats,
checked against plink2 and the group level's readers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bgs_app.genetics import load_genotypes
from bgs_app.genetics.kinship import read_kinship
from bgs_app.simulate import genotypes as simgeno
from tests.test_genetics import needs_plink2, plink2

N_MRI = 400


def _draw(spec: simgeno.CohortGenetics, seed: int = 1) -> simgeno.GenotypeSet:
    labels = [f"{i + 1:04d}" for i in range(N_MRI)]
    rng = np.random.default_rng(seed)
    snp_rng = np.random.default_rng(seed + 100)
    base = simgeno.simulate_genotypes(rng, labels, 12, ["sim01", "sim02"], snp_rng=snp_rng)
    return simgeno.structure_genotypes(np.random.default_rng(seed + 7), base, spec, N_MRI,
                                       snp_rng)


@pytest.fixture(scope="module")
def structured():
    return _draw(simgeno.CohortGenetics(sibships=0.3, ancestries=2, fst=0.1,
                                        panel_snps=2000, imputation_noise=0.15))


def test_sibships_share_half_their_genome(structured):
    kin0 = structured.kinship
    assert len(kin0) == pytest.approx(0.3 * N_MRI / 2, abs=8)  # pairs with both genotyped
    assert kin0["KINSHIP"].mean() == pytest.approx(0.25, abs=0.01)
    assert kin0["KINSHIP"].between(0.18, 0.32).all()
    # Siblings' dosages correlate by 1/2 on the panel; unrelated people's by 0.
    iid = {p: i for i, p in enumerate(structured.iid)}
    panel = [structured.bim["snp"].tolist().index(s) for s in structured.panel_snps]
    g = np.nan_to_num(structured.called[:, panel] - np.nanmean(structured.called[:, panel],
                                                               axis=0))
    sib = [np.corrcoef(g[iid[a]], g[iid[b]])[0, 1] for a, b in zip(kin0["IID1"],
                                                                   kin0["IID2"], strict=True)]
    assert np.mean(sib) == pytest.approx(0.5, abs=0.06)
    assert structured.family and len(set(structured.family.values())) == len(
        set(structured.family.values()))


def test_ancestries_differ_as_fst_says(structured):
    ancestry = np.array([structured.ancestry[p] for p in structured.iid])
    assert 0.15 < (ancestry == 1).mean() < 0.35
    panel = [structured.bim["snp"].tolist().index(s) for s in structured.panel_snps]
    d = structured.called[:, panel]
    p0 = np.nanmean(d[ancestry == 0], axis=0) / 2
    p1 = np.nanmean(d[ancestry == 1], axis=0) / 2
    # Hudson's Fst (ratio of averages), as plink2 --fst computes it, without its
    # sample-size correction: near 0.1, far from a single population's ~0.
    num = (p0 - p1) ** 2
    den = p0 * (1 - p1) + p1 * (1 - p0)
    assert 0.07 < num.sum() / den.sum() < 0.14
    same = _draw(simgeno.CohortGenetics(panel_snps=2000), seed=2)
    assert not same.ancestry


def test_imputation_noise_gives_dosages_and_info(structured):
    called = structured.called[:, :12]
    ok = ~np.isnan(called)
    assert (np.abs(called[ok] - np.rint(called[ok])) > 0.01).mean() > 0.5
    probs = structured.probabilities[:, :12]
    np.testing.assert_allclose(probs.sum(axis=-1)[ok], 1.0, atol=1e-9)
    np.testing.assert_allclose(probs @ np.arange(3.0), called, atol=1e-6)


@needs_plink2
@pytest.mark.parametrize("fmt", ["pgen", "bgen", "bed"])
def test_formats_read_back_and_match_plink2(structured, fmt, tmp_path):
    prefix = tmp_path / "study"
    paths = simgeno.write_genotypes(structured, prefix, fmt=fmt)
    assert prefix.with_suffix(".kin0") in paths
    ours = load_genotypes(prefix.with_suffix(f".{fmt}"), maf=None, geno=None, hwe=None,
                          mind=None, index_dir=tmp_path / "index")
    written = pd.DataFrame(structured.called, index=[f"sub-{i}" for i in structured.iid],
                           columns=structured.bim["snp"])
    if fmt == "bed":  # hard calls within 0.1, as plink2 calls them
        hard = np.rint(written)
        written = hard.where((written - hard).abs() <= 0.1)
    mine = ours.dosages
    tol = 1 / 65535 if fmt == "bgen" else 1 / 16384  # BGEN 16 bits; PGEN dosage units
    np.testing.assert_allclose(mine.to_numpy(), written.loc[mine.index, mine.columns]
                               .to_numpy(), atol=2 * tol)
    # plink2 reads the same dosages (BGEN ref-first: the second allele counted).
    args = {"pgen": ["--pfile", str(prefix)],
            "bgen": ["--bgen", str(prefix.with_suffix(".bgen")), "ref-first", "--sample",
                     str(prefix.with_suffix(".sample"))],
            "bed": ["--bfile", str(prefix)]}[fmt]
    plink2([*args, "--export", "A", "--freq"], tmp_path / "ref")
    raw = pd.read_csv(tmp_path / "ref.raw", sep=r"\s+")
    raw.index = "sub-" + raw["IID"].astype(str)
    a1 = dict(zip(structured.bim["snp"], structured.bim["a1"], strict=True))
    theirs = {}
    for column in raw.columns[6:]:  # <ID>_<allele counted>
        snp, allele = column.rsplit("_", 1)
        theirs[snp] = raw[column] if allele == a1[snp] else 2 - raw[column]
    theirs = pd.DataFrame(theirs)
    np.testing.assert_allclose(theirs.loc[mine.index, mine.columns].to_numpy(float),
                               mine.to_numpy(), atol=1e-3)
    if fmt != "bed":  # imputation INFO (MaCH r2) below 1, as the noise makes it
        info = ours.snp_qc.set_index("snp").loc[structured.panel_snps, "info"]
        assert 0.6 < info.median() < 0.95
    kin = read_kinship(prefix.with_suffix(".kin0"))
    assert len(kin) == len(structured.kinship)


@needs_plink2
def test_a_simulated_study_with_relatives_and_ancestries(tmp_path):
    """The study's own files: PGEN with the panel, the KING table the group level reads,
    the truth's families and ancestries; plink2 finds the siblings in the file."""
    from bgs_app.simulate import SimulationParams, simulate_study

    params = SimulationParams(n_subjects=24, seed=5, resolution=4.0, sibships=0.5,
                              ancestries=2, panel_snps=1500, genotype_format="pgen")
    truth = simulate_study(tmp_path / "study", params, progress=False)
    prefix = tmp_path / "study" / "genetics" / "study"
    assert prefix.with_suffix(".pgen").is_file() and not prefix.with_suffix(".bed").exists()
    genotypes = load_genotypes(prefix, maf=None, geno=None, hwe=None, mind=None)
    assert {"sim01", "gw01500"} <= set(genotypes.dosages.columns)
    pairs = truth["sibships"]["pairs"]
    assert len(pairs) == 6 and truth["sibships"]["kinship_file"] == "genetics/study.kin0"
    kin = read_kinship(prefix.with_suffix(".kin0"))
    assert len(kin) <= len(pairs)
    assert set(truth["ancestries"]["values"]) == {f"sub-{i:04d}" for i in range(1, 25)}
    # plink2's KING-robust kinship on the file: the written pairs are first-degree.
    plink2(["--pfile", str(prefix), "--make-king-table"], tmp_path / "king")
    king = pd.read_csv(tmp_path / "king.kin0", sep="\t", dtype={"#FID1": str, "IID1": str,
                                                                 "FID2": str, "IID2": str})
    pair_ids = {frozenset(p) for p in zip(kin["iid1"], kin["iid2"], strict=True)}
    is_pair = np.array([frozenset(p) in pair_ids
                        for p in zip(king["IID1"], king["IID2"], strict=True)])
    assert is_pair.sum() == len(kin)
    assert king.loc[is_pair, "KINSHIP"].min() > 0.15
    assert king.loc[~is_pair, "KINSHIP"].quantile(0.99) < 0.1


def test_genetic_pcs_from_any_format_find_the_ancestries(tmp_path):
    """The same hard calls as .bed, .pgen and .bgen give the same PCs; PC1 is ancestry."""
    from bgs_app.genetics import genetic_pcs

    geno = _draw(simgeno.CohortGenetics(ancestries=2, fst=0.1, panel_snps=1500), seed=3)
    pcs = {}
    for fmt in simgeno.FORMATS:
        simgeno.write_genotypes(geno, tmp_path / fmt / "study", fmt=fmt)
        path = tmp_path / fmt / ("study" if fmt == "bed" else f"study.{fmt}")
        pcs[fmt] = genetic_pcs(path, 2, exclude=pd.DataFrame({"snp": ["sim01"]}))
    for fmt in ("pgen", "bgen"):
        np.testing.assert_allclose(pcs[fmt].to_numpy(), pcs["bed"].to_numpy(), atol=1e-6)
    ancestry = pd.Series({f"sub-{p}": a for p, a in geno.ancestry.items()})
    r = np.corrcoef(pcs["bed"]["PC1"], ancestry.reindex(pcs["bed"].index))[0, 1]
    assert abs(r) > 0.95
