"""Demo step: what the group level found and claimed, against the simulation's truth.

Usage: python scripts/demo_summary.py STUDY_DIR GROUP_DIR
Prints the CNN's genotype prediction for causal and null SNPs; the claims table (every
CNN score x measure claimed ``genetic`` or ``anatomical``, with the truth: a planted link,
a link through an overlapping effect region, or none); and per family the
Bonferroni-significant rows against the truth. Exits 1 when no planted link is found in
any family, or when a genetic claim or a significant genotype row is not a link of the
truth.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def main(study: Path, group: Path) -> int:
    truth = json.loads((study / "derivatives/simulation-truth/truth.json").read_text())
    causal = set(truth["causal_snps"])
    from bgs_app.simulate.evaluate import truth_links

    links = truth_links(study)
    fmt = {"float_format": lambda v: f"{v:.3g}", "index": False}
    perf = pd.read_csv(group / "performance.tsv", sep="\t", na_values="n/a")
    cnn = perf[perf["model"] == "cnn"].assign(causal=lambda t: t["snp"].isin(causal))
    print("\nCNN genotype prediction (out-of-fold): causal SNPs first")
    print(cnn.sort_values(["causal", "snp"], ascending=[False, True])[
        ["snp", "causal", "n_test", "auc", "r_dosage", "p_r_dosage", "first_stage_f"]
    ].to_string(**fmt))
    table = pd.read_csv(group / "associations.tsv", sep="\t", na_values="n/a",
                        keep_default_na=False)
    table["truth"] = [links.get((s, m), "none") for s, m in zip(table["snp"],
                                                                table["measure"], strict=True)]
    pairs = table[table["source"] == "cnn"].drop_duplicates(["snp", "measure"])
    claimed = pairs[pairs["claim"].isin(["genetic", "anatomical"])]
    print(f"\nClaims of the CNN scores ({len(pairs)} score x measure pairs; "
          f"{int((pairs['validated'].astype(str) == 'true').sum())} with a gated score):")
    print(claimed[["snp", "measure", "claim", "truth"]].to_string(index=False)
          if len(claimed) else "none: no CNN score predicts its genotype well enough here")
    hits = table[(table["family"] != "") & (table["p_bonferroni"] < 0.05)]
    planted = {k for k, v in links.items() if v == "planted"}
    print(f"\nBonferroni-significant rows per family ({len(planted)} planted links, "
          f"{sum(v == 'overlap' for v in links.values())} more through overlapping effect "
          "regions):")
    for family, rows in hits.groupby("family"):
        print(f"  {family}: {int((rows['truth'] == 'planted').sum())} planted, "
              f"{int((rows['truth'] == 'overlap').sum())} through overlap, "
              f"{int((rows['truth'] == 'none').sum())} not linked in the truth")
    if hits.empty:
        print("  none")
    learnt = cnn[cnn["causal"] & (cnn["r_dosage"] > 0) & (cnn["p_r_dosage"] < 0.01)]
    if not len(learnt):
        print("\nThe CNN did not learn the causal genotypes from this few training images; "
              "the genotype rows carry the links here.")
    false_genetic = claimed[(claimed["claim"] == "genetic") & (claimed["truth"] == "none")]
    false_genotype = hits[(hits["family"] == "genotype") & (hits["truth"] == "none")]
    found = (hits["truth"] == "planted").any()
    return 0 if found and false_genetic.empty and false_genotype.empty else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
