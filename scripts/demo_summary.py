"""Demo step: genotype QC and genotype-cognition associations against the planted truth.

Usage: python scripts/demo_summary.py STUDY_DIR OUT_DIR
Exits 1 when no planted SNP-measure link is found after Bonferroni correction.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

from bgs_app.genetics import load_genotypes
from bgs_app.genetics.tables import write_genotype_tables
from bgs_app.stats import associate_sources, load_phenotypes
from bgs_app.stats.tables import write_associations


def main(study: Path, out: Path) -> int:
    truth = json.loads((study / "derivatives/simulation-truth/truth.json").read_text())
    participants = pd.read_csv(study / "participants.tsv", sep="\t")["participant_id"]
    genotypes = load_genotypes(study / "genetics/study", participants=list(participants))
    write_genotype_tables(genotypes, out, {"maf": 0.01, "geno": 0.1, "hwe": 1e-6,
                                           "mind": 0.1})
    dropped = genotypes.snp_qc.loc[~genotypes.snp_qc["kept"], ["snp", "reason"]]
    print(f"QC: {genotypes.summary}")
    print("dropped SNPs:\n" + dropped.to_string(index=False))
    measures = list(truth["measures"])
    pheno, covs = load_phenotypes(study, measures, ["age", "sex", "site"])
    table = associate_sources({"genotype": genotypes.dosages}, pheno, covs)
    write_associations(table, out)
    planted = {(d["snp"], m) for m, spec in truth["measures"].items() for d in spec["drivers"]}
    table["planted"] = [(s, m) in planted for s, m in zip(table["snp"], table["measure"],
                                                          strict=True)]
    hits = table[table["p_bonferroni"] < 0.05]
    cols = ["source", "snp", "measure", "n", "beta", "p", "p_bonferroni", "planted"]
    print(f"\nBonferroni-significant associations ({len(table)} tests):")
    print(hits[cols].to_string(index=False) if len(hits) else "none")
    found = int(hits["planted"].sum())
    false = int((~hits["planted"]).sum())
    print(f"\nplanted links: {len(planted)}; found: {found}; significant but not planted: "
          f"{false}. Tables in {out}/")
    return 0 if found else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
