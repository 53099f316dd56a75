"""Validity of the claims: family-wise error and power over many score-level studies.

Usage: python benchmarks/validity.py [--studies N] [--n 400 4000] [--processes P]
       [--out FILE] [--markdown FILE] [--quick]
       python benchmarks/validity.py --from FILE [FILE ...] --markdown FILE  (tables)
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
                     k = 1..3) of ``e`` SD per allele (0.02: the size of the largest
                     single-SNP effects on cognition; 0.05-0.2: far larger, to show power)

Per scenario and n: the fraction of studies with a false ``genetic`` claim (any claim
where the truth has no link) with its Clopper-Pearson 95 % interval, and split by the
SNP it falls on (one of the SNPs that change the scored anatomy, or another SNP let in by
the gate); the same for the
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
from _common import code_version, machine, machine_label  # noqa: E402

SCENARIOS = {
    "global_null": {"brain_snps": 0, "confound": 0.0, "links": {}},
    "confounded_null": {"brain_snps": 4, "confound": 0.4, "links": {}},
    "planted_0.02": {"brain_snps": 4, "confound": 0.4,
                     "links": {(k, k): 0.02 for k in range(3)}},
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
    brain = {f"rs{i + 1:04d}" for i in range(SCENARIOS[scenario]["brain_snps"])}
    false = genetic - linked
    return {"false_genetic": bool(false), "false_score": bool(score_pairs - linked),
            "false_genetic_brain_snp": any(s in brain for s, _ in false),
            "false_genetic_other_snp": any(s not in brain for s, _ in false),
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
                       ("false_genetic_brain_snp", "false_genetic_claim_of_a_brain_snp"),
                       ("false_genetic_other_snp", "false_genetic_claim_of_another_snp"),
                       ("false_score", "fwer_score_test_read_as_genetic")):
        k = sum(r.get(key, False) for r in results)
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


def _cell(stat: dict) -> str:
    low, high = stat["ci95"]
    return f"{stat['rate']:.3f} ({low:.3f}-{high:.3f})"


def markdown(report: dict) -> str:
    """The tables of ``docs/validation.md`` from a report of this script."""
    results = report["results"]
    sizes = sorted({int(n) for cells in results.values() for n in cells})
    head = "| scenario | " + " | ".join(f"n = {n:,}" for n in sizes) + " |"
    rule = "|---|" + "---|" * len(sizes)
    lines = [f"Score-level studies, {report['studies_per_cell']:,} per cell, 12 SNPs x 3 "
             f"measures (`{report.get('command', 'benchmarks/validity.py')}`, "
             f"{machine_label(report['machine'])}, commit "
             f"{(report.get('git_commit') or '?')[:7]}); "
             "rate with its 95 % Clopper-Pearson interval.", "",
             "**Studies with a false `genetic` claim** (family-wise error of the claim):", "",
             head, rule]
    for scenario, cells in results.items():
        lines.append(f"| {scenario} | " + " | ".join(
            _cell(cells[str(n)]["fwer_genetic_claim"]) if str(n) in cells else ""
            for n in sizes) + " |")
    split = [(scenario, cells) for scenario, cells in results.items()
             if any("false_genetic_claim_of_another_snp" in c for c in cells.values())]
    if split:
        lines += ["", "**Where the false `genetic` claims fall**: on a SNP that changes the "
                  "scored anatomy; on another SNP let in by the gate:", "", head, rule]
        for scenario, cells in split:
            lines.append(f"| {scenario} | " + " | ".join(
                f"{_cell(c['false_genetic_claim_of_a_brain_snp'])}; "
                f"{_cell(c['false_genetic_claim_of_another_snp'])}"
                if (c := cells.get(str(n))) and "false_genetic_claim_of_a_brain_snp" in c
                else "" for n in sizes) + " |")
    lines += ["", "**Studies where the gated score test, read as a genetic finding, is "
              "wrong** (what the report claimed before):", "", head, rule]
    for scenario, cells in results.items():
        lines.append(f"| {scenario} | " + " | ".join(
            _cell(cells[str(n)]["fwer_score_test_read_as_genetic"]) if str(n) in cells
            else "" for n in sizes) + " |")
    powered = [(scenario, cells) for scenario, cells in results.items()
               if any("power_per_planted_link" in c for c in cells.values())]
    if powered:
        lines += ["", "**Power: planted links claimed `genetic`** (three links per study):",
                  "", head, rule]
    for scenario, cells in powered:
        lines.append(f"| {scenario} | " + " | ".join(
            _cell(cells[str(n)]["power_per_planted_link"]) if str(n) in cells else ""
            for n in sizes) + " |")
    lines += ["", "**The gate** (mean scores let in of 12; of them the 4 brain SNPs; median "
              "first-stage F of the gated scores):", "", head, rule]
    for scenario, cells in results.items():
        lines.append(f"| {scenario} | " + " | ".join(
            f"{c['gate_mean_scores_passed']:.2f}; {c['gate_mean_brain_snps_passed']:.2f}; "
            f"{c['median_first_stage_f_of_gated']}" if (c := cells.get(str(n))) else ""
            for n in sizes) + " |")
    return "\n".join(lines) + "\n"


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
    parser.add_argument("--markdown", type=Path, help="write the tables here")
    parser.add_argument("--from", dest="source", type=Path, nargs="+",
                        help="no studies: the tables of these earlier reports")
    args = parser.parse_args(argv)
    if args.source:
        if not args.markdown:
            parser.error("--from needs --markdown")
        args.markdown.write_text("\n".join(markdown(json.loads(p.read_text()))
                                           for p in args.source))
        return 0
    if args.quick:
        args.studies, args.n = 20, [400]
    command = "python benchmarks/validity.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    report = {"benchmark": "validity of the claims (benchmarks/validity.py)",
              "command": command,
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
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown(report))
    return 0


if __name__ == "__main__":
    sys.dont_write_bytecode = True
    sys.exit(main())
