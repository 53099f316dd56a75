"""Summary statistics equal ``plink2 --glm`` on the same people, dosages and covariates."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bgs_app.genetics import load_genotypes
from bgs_app.genetics.alleles import allele_table
from bgs_app.stats.claims import association_table
from bgs_app.stats.sumstats import COLUMNS, sumstats_tables
from tests.test_genetics import needs_plink2, plink2


def _study(root):
    """plink2's dummy dosages, two measures (with missing values) and mixed covariates."""
    plink2(["--dummy", "240", "25", "0.02", "dosage-freq=0.4", "--seed", "11",
            "--make-pgen"], root / "d")
    genotypes = load_genotypes(root / "d.pgen", maf=None, geno=None, hwe=None, mind=None)
    ids = genotypes.dosages.index
    rng = np.random.default_rng(4)
    n = len(ids)
    covs = pd.DataFrame({"age": rng.normal(60, 7, n), "sex": rng.integers(0, 2, n),
                         "site": rng.choice(["siteA", "siteB", "siteC"], n)}, index=ids)
    d = genotypes.dosages.fillna(genotypes.dosages.mean())
    pheno = pd.DataFrame({
        "fluid": 0.3 * d.iloc[:, 0] + 0.02 * covs["age"] + rng.normal(0, 1, n),
        "rt": 0.5 * d.iloc[:, 3] - 0.2 * covs["sex"] + rng.normal(0, 1, n)}, index=ids)
    pheno.iloc[rng.choice(n, 20, replace=False), 0] = np.nan
    covs.iloc[rng.choice(n, 5, replace=False), 0] = np.nan
    iid = [i.removeprefix("sub-") for i in ids]
    pheno.set_axis(iid).rename_axis("#IID").to_csv(root / "pheno.tsv", sep="\t",
                                                   na_rep="NA")
    covs.set_axis(iid).rename_axis("#IID").to_csv(root / "covar.tsv", sep="\t", na_rep="NA")
    return genotypes, pheno, covs


@needs_plink2
def test_sumstats_equal_plink2_glm(tmp_path):
    genotypes, pheno, covs = _study(tmp_path)
    table = association_table(pheno, covs, dosages=genotypes.dosages)
    variants = (genotypes.snp_qc.set_index("snp")[["chrom", "pos"]]
                .join(allele_table(genotypes.snp_qc)))
    tables = sumstats_tables(table, genotypes.dosages, pheno, covs, variants)
    assert set(tables) == {"fluid", "rt"}
    plink2(["--pfile", str(tmp_path / "d"), "--pheno", str(tmp_path / "pheno.tsv"),
            "--covar", str(tmp_path / "covar.tsv"), "--glm", "omit-ref", "hide-covar",
            "cols=+a1freq", "--output-min-p", "1e-300"], tmp_path / "ref")
    for measure, ours in tables.items():
        assert list(ours.columns) == COLUMNS
        assert (ours["SOURCE"] == "genotype").all() and len(ours) == 25
        ref = pd.read_csv(tmp_path / f"ref.{measure}.glm.linear", sep="\t")
        ref = ref[ref["TEST"] == "ADD"].set_index("ID").loc[ours["ID"]]
        assert (ours["A1"].to_numpy() == ref["A1"].to_numpy()).all()
        assert (ours["REF"].to_numpy() == ref["REF"].to_numpy()).all()
        np.testing.assert_array_equal(ours["OBS_CT"], ref["OBS_CT"])
        np.testing.assert_array_equal(ours["POS"], ref["POS"])
        for column in ("BETA", "SE", "T_STAT", "P", "A1_FREQ"):
            # plink2 writes 6 significant digits: equal to half a unit in the last
            np.testing.assert_allclose(ours[column], ref[column], rtol=1e-5, err_msg=column)
    # The planted effects are found.
    assert tables["fluid"].set_index("ID").loc["snp0", "P"] < 0.01
    assert tables["rt"].set_index("ID").loc["snp3", "P"] < 0.01
