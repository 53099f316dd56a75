"""Benchmark the vectorised associations against a statsmodels loop.

Usage: python benchmarks/associations_speed.py [--scores 1000] [--measures 10]
       [--subjects 10000] [--loop-tests 300]
Times ``bgs_app.stats.associate`` on every score x measure test, and statsmodels OLS
on ``--loop-tests`` of them (same complete cases, z-scored), extrapolated to all tests.
Prints JSON with both times and their ratio (one run each).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd
from _common import machine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scores", type=int, default=1000)
    parser.add_argument("--measures", type=int, default=10)
    parser.add_argument("--subjects", type=int, default=10_000)
    parser.add_argument("--loop-tests", type=int, default=300)
    args = parser.parse_args()

    import statsmodels.api as sm

    from bgs_app.stats import associate

    rng = np.random.default_rng(0)
    n = args.subjects
    scores = pd.DataFrame(rng.normal(size=(n, args.scores)),
                          columns=[f"s{i}" for i in range(args.scores)])
    scores[rng.random((n, args.scores)) < 0.02] = np.nan
    phen = pd.DataFrame(rng.normal(size=(n, args.measures)),
                        columns=[f"m{i}" for i in range(args.measures)])
    phen[rng.random((n, args.measures)) < 0.05] = np.nan
    covs = pd.DataFrame({"age": rng.normal(60, 8, n), "sex": rng.choice(["F", "M"], n),
                         "site": rng.choice(list("abc"), n)})
    start = time.perf_counter()
    table = associate(scores, phen, covs)
    vectorised = time.perf_counter() - start
    n_tests = len(table)

    dummies = pd.get_dummies(covs[["sex", "site"]], drop_first=True, dtype=float)
    pairs = [(f"s{i % args.scores}", f"m{i % args.measures}") for i in range(args.loop_tests)]
    start = time.perf_counter()
    for s, m in pairs:
        data = pd.concat([scores[s], phen[m], covs[["age"]], dummies], axis=1).dropna()
        z = (data - data.mean()) / data.std()
        x = sm.add_constant(pd.concat([z[[s]], data[["age", *dummies.columns]]], axis=1))
        sm.OLS(z[m], x).fit()
    loop = (time.perf_counter() - start) / len(pairs) * n_tests
    print(json.dumps({
        "benchmark": "associations: vectorised vs statsmodels loop",
        "machine": machine(),
        "scores": args.scores, "measures": args.measures, "subjects": n,
        "tests": n_tests, "vectorised_seconds": round(vectorised, 2),
        "statsmodels_loop_seconds_extrapolated": round(loop, 1),
        "statsmodels_loop_tests_timed": len(pairs),
        "speedup": round(loop / vectorised, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
