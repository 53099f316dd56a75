"""Validity of the claims: family-wise error and power over many score-level studies.

Usage: python benchmarks/validity.py [--studies N] [--n 400 4000] [--processes P]
       [--out FILE] [--quick]
Each study (``bgs_app.simulate.scores``) goes through the group level's own functions:
the score gate (``bgs_app.stats.gate.validated_scores`` on the held-out score-dosage
correlation of ``bgs_app.stats.metrics``) and the association table with its families
and claims (``bgs_app.stats.claims.association_table``). Scenarios, 12 SNPs x 3
measures:

``global_null``      no SNP changes the scored anatomy, nothing drives cognition
``confounded_null``  4 SNPs change the anatomy their scores read (genetic share of the
                     score 0.0225, i.e. score-dosage r 0.15), a shared non-genetic anatomy
                     (the trunk's) drives every measure (standardised effect 0.4), no SNP
                     affects cognition
``planted_<e>``      the confounded study plus three genetic links (SNP k -> measure k,
                     k = 1..3) of ``e`` SD per allele

Per scenario and n: the fraction of studies with a false ``genetic`` claim (any claim
where the truth has no link) with its Clopper-Pearson 95 % interval; the same for the
gated score test read as a genetic finding (what the report did before: a significant
row of the score family); the power (planted links claimed genetic); the gate's pass
rate and the median first-stage F. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import code_version, machine  # noqa: E402

SCENARIOS = {
    "global_null": {"brain_snps": 0, "confound": 0.0, "links": {}},
    "confounded_null": {"brain_snps": 4, "confound": 0.4, "links": {}},
    "planted_0.05": {"brain_snps": 4, "confound": 0.4,
                     "links": {(k, k): 0.05 for k in range(3)}},
    "planted_0.1": {"brain_snps": 4, "confound": 0.4, "links": {(k, k): 0.1 for k in range(3)}},
    "planted_0.2": {"brain_snps": 4, "confound": 0.4, "links": {(k, k): 0.2 for k in range(3)}},
}


def one_study(args: tuple) -> dict:
    """One study through the gate and the association table; what it claimed."""
    scenario, n, seed = args
    import pandas as pd
    from threadpoolctl import threadpool_limits

    from bgs_app.simulate.scores import ScoreStudy, simulate_score_study
    from bgs_app.stats.claims import association_table
    from bgs_app.stats.gate import validated_scores
    from bgs_app.stats.metrics import score_dosage_correlation

    with threadpool_limits(limits=1):
        data = simulate_score_study(ScoreStudy(n=n, seed=seed, **SCENARIOS[scenario]))
        scores, dosages = data["scores"], data["dosages"]
        performance = pd.DataFrame([
            {"model": "cnn", "snp": s, **score_dosage_correlation(dosages[s], scores[s])}
            for s in scores.columns])
        validated = validated_scores(performance)
        table = association_table(data["phenotypes"], data["covariates"], cnn=scores,
                                  dosages=dosages, validated=validated)
    truth = data["truth"].set_index(["snp", "measure"])["genetic_link"]
    cnn = table[table["source"] == "cnn"]
    claims = cnn.drop_duplicates(["snp", "measure"]).set_index(["snp", "measure"])["claim"]
    genetic = {k for k, v in claims.items() if v == "genetic"}
    linked = {k for k, v in truth.items() if v}
    score_hits = cnn[(cnn["test"] == "score") & (cnn["p_bonferroni"] < 0.05)]
    score_pairs = set(zip(score_hits["snp"], score_hits["measure"], strict=True))
    first = cnn[cnn["test"] == "first_stage"].drop_duplicates("snp")
    gated = sorted(validated.get("cnn", set()))
    return {"false_genetic": bool(genetic - linked), "false_score": bool(score_pairs - linked),
            "planted": len(linked), "planted_genetic": len(genetic & linked),
            "gated": len(gated),
            "gated_brain": sum(1 for s in gated if int(s[2:]) <= SCENARIOS[scenario][
                "brain_snps"]),
            "median_first_stage_f": float(first.loc[first["snp"].isin(gated), "f_stat"]
                                          .median()) if gated else None}


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Exact binomial interval of k successes in n."""
    from scipy import stats

    tail = (1 - level) / 2
    low = 0.0 if k == 0 else float(stats.beta.ppf(tail, k, n - k + 1))
    high = 1.0 if k == n else float(stats.beta.ppf(1 - tail, k + 1, n - k))
    return low, high


def summarise(results: list[dict]) -> dict:
    studies = len(results)
    out = {"studies": studies}
    for key, label in (("false_genetic", "fwer_genetic_claim"),
                       ("false_score", "fwer_score_test_read_as_genetic")):
        k = sum(r[key] for r in results)
        low, high = clopper_pearson(k, studies)
        out[label] = {"errors": k, "rate": round(k / studies, 4),
                      "ci95": [round(low, 4), round(high, 4)]}
    planted = sum(r["planted"] for r in results)
    if planted:
        found = sum(r["planted_genetic"] for r in results)
        low, high = clopper_pearson(found, planted)
        out["power_per_planted_link"] = {"found": found, "links": planted,
                                         "rate": round(found / planted, 4),
                                         "ci95": [round(low, 4), round(high, 4)]}
    out["gate_mean_scores_passed"] = round(statistics.mean(r["gated"] for r in results), 3)
    out["gate_mean_brain_snps_passed"] = round(
        statistics.mean(r["gated_brain"] for r in results), 3)
    fs = [r["median_first_stage_f"] for r in results if r["median_first_stage_f"] is not None]
    out["median_first_stage_f_of_gated"] = round(statistics.median(fs), 2) if fs else None
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--studies", type=int, default=1000, help="studies per scenario and n")
    parser.add_argument("--n", type=int, nargs="+", default=[400, 4000])
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS),
                        default=list(SCENARIOS))
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20261201)
    parser.add_argument("--quick", action="store_true", help="20 studies, n = 400")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.studies, args.n = 20, [400]
    report = {"benchmark": "validity of the claims (benchmarks/validity.py)",
              "machine": machine(), **code_version(), "studies_per_cell": args.studies,
              "scenarios": {k: {**v, "links": {f"rs{a + 1:04d}->measure{b + 1}": e
                                               for (a, b), e in v["links"].items()}}
                            for k, v in SCENARIOS.items() if k in args.scenarios},
              "results": {}}
    began = time.perf_counter()
    with ProcessPoolExecutor(max(1, args.processes)) as pool:
        for scenario in args.scenarios:
            for n in args.n:
                start = time.perf_counter()
                seeds = [args.seed + 1_000_003 * i + 7919 * n for i in range(args.studies)]
                results = list(pool.map(one_study, [(scenario, n, s) for s in seeds],
                                        chunksize=8))
                cell = summarise(results)
                cell["seconds"] = round(time.perf_counter() - start, 1)
                report["results"].setdefault(scenario, {})[str(n)] = cell
                print(f"validity: {scenario} n={n}: {json.dumps(cell)}", file=sys.stderr,
                      flush=True)
    report["total_seconds"] = round(time.perf_counter() - began, 1)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    sys.exit(main())
