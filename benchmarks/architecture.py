"""Architecture ablation: which network options make the CNN learn each kind of effect,
judged against the IDP, voxel-ridge baselines on the same split.

Usage: python benchmarks/architecture.py [--seeds 1 2 3] [--n 400]
       [--effect-size 80 80 40 40] [--epochs 40] [--configs base auto ...] [--out FILE]
       [--keep DIR]

Per seed, ``bgs-simulate`` writes a study at 4 mm with 12 SNPs, four causal, one of each
effect kind: ``atlas`` (the volume of the left hippocampus, 80 % per allele), ``blobs``
(three Gaussian blobs, 80 %), ``shape`` (a boundary of the right thalamus moves at
constant volume) and ``pattern`` (alternating expansion and contraction inside the left
putamen, 12 mm period), both 40 % per allele at their peak (80 % at two copies: beyond
that a contraction would fold, and the region's volume could not stay constant). The
model-grid images come from the true transforms and the IDP tables are the true regional volumes
(``truth_model_grid(..., idps=True)``): the IDP baseline is what a perfect nonlinear
registration and segmentation give, an upper bound of the participant level's. The
group level then trains once per configuration on the same images and split:

``base``      SFCN as today: five poolings (a 1 x 1 x 1 last map at 4 mm), mean read-out
``auto``      ``--poolings auto``: a 5 x 6 x 5 last map
``flatten``   ``--poolings auto --readout flatten`` (at 4 mm the flatten read-out alone
              reads a 1 x 1 x 1 map: it is the mean read-out)
``coords``    ``--coord-channels``
``group``     ``--norm group``
``shift0``    ``--max-shift 0`` (today's shift is one voxel at 4 mm)
``mean-sel``  ``--checkpoint-selection mean`` (today: informative)
``all``       auto + flatten + coords + group norm
``logjac``    ``--cnn-input logjacobian``: the CNN reads the log-Jacobian maps (here the
              *true* deformation's, from the oracle: a perfect SyN registration)
``logjac-shift0``, ``logjac-auto``  the same with ``--max-shift 0`` / ``--poolings auto``
``logjac-ens3``  the same with ``--ensemble 3`` (three networks, probabilities averaged)

The baselines (``idp-logreg``, ``idp-gbm``, ``voxel-ridge``, and ``voxel-ridge-logjac``
on the log-Jacobian maps) depend only on the images,
genotypes and split, so they are fitted once per seed (later configurations find their
stage current). Reported per configuration and effect kind: the held-out r between score
and dosage per seed, its median and range over seeds, and the null SNPs' gate pass rate
(held-out r > 0 with Bonferroni p < 0.05 over the tested SNPs). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import code_version, emit, machine, run_logged, seed_folder  # noqa: E402

BGS_APP = [sys.executable, "-m", "bgs_app"]
SIMULATE = [sys.executable, "-m", "bgs_app.simulate"]
KINDS = ("atlas", "blobs", "shape", "pattern")
CONFIGS = {
    "base": [],
    "auto": ["--poolings", "auto"],
    "flatten": ["--poolings", "auto", "--readout", "flatten"],
    "coords": ["--coord-channels"],
    "group": ["--norm", "group"],
    "shift0": ["--max-shift", "0"],
    "mean-sel": ["--checkpoint-selection", "mean"],
    "all": ["--poolings", "auto", "--readout", "flatten", "--coord-channels", "--norm",
            "group"],
    "logjac": ["--cnn-input", "logjacobian"],
    "logjac-shift0": ["--cnn-input", "logjacobian", "--max-shift", "0"],
    "logjac-auto": ["--cnn-input", "logjacobian", "--poolings", "auto"],
    "logjac-ens3": ["--cnn-input", "logjacobian", "--ensemble", "3"],
}
BASELINES = ("idp-logreg", "idp-gbm", "voxel-ridge", "voxel-ridge-logjac")


def _run(cmd: list[str], log: Path) -> float:
    return run_logged(cmd, log, "architecture")


def _gated(perf: pd.DataFrame) -> set[str]:
    """SNPs the score gate passes (as the group level decides it)."""
    from bgs_app.stats.gate import validated_scores

    return set(validated_scores(perf).get("cnn", set()))


def one_seed(base: Path, seed: int, args: argparse.Namespace, configs: list[str]) -> dict:
    from bgs_app.simulate.oracle import truth_model_grid

    study, log = base / "study", base / "log.txt"
    _run([*SIMULATE, str(study), "--n-subjects", str(args.n), "--seed", str(seed),
          "--resolution", "4", "--n-causal", "4", "--effect-size",
          *map(str, args.effect_size),
          "--effect-kinds", *KINDS, "--nprocs", "2", "--quiet"], log)
    truth = json.loads((study / "derivatives/simulation-truth/truth.json").read_text())
    kind_of = {s["snp"]: s.get("effect_kind", "null") if s["causal"] else "null"
               for s in truth["snps"] if s["qc_failure"] is None}
    (base / "snps.txt").write_text("\n".join(kind_of) + "\n")
    out = truth_model_grid(study, base / "out", 4.0, nprocs=2, idps=True)
    result = {"seed": seed, "effect_kinds": kind_of, "configs": {}}
    for name in configs:
        cmd = [*BGS_APP, str(study), str(out), "group", "--genotypes",
               str(study / "genetics/study"), "--snps-file", str(base / "snps.txt"),
               "--resolution", "4", "--epochs", str(args.epochs), "--patience",
               str(args.epochs), "--batch-size", "8", "--learning-rate", "2e-3",
               "--channels", *map(str, args.channels), "--no-saliency", "--covariates",
               "age", "sex", "site", "--nprocs", "2", "--seed", str(seed), "-w",
               str(base / "work"), "--skip-bids-validation", *CONFIGS[name]]
        seconds = _run(cmd, log)
        perf = pd.read_csv(out / "group/performance.tsv", sep="\t", na_values="n/a")
        perf = perf[perf["snp"].isin(kind_of)]
        r = {model: dict(zip(rows["snp"], rows["r_dosage"].round(4), strict=True))
             for model, rows in perf.groupby("model")}
        gated = _gated(perf)
        nulls = [s for s, k in kind_of.items() if k == "null"]
        result["configs"][name] = {
            "r_dosage": r, "seconds": round(seconds, 1),
            "null_gated": sorted(gated & set(nulls)), "n_null": len(nulls),
            "causal_gated": sorted(gated - set(nulls))}
    return result


def _spread(values: list[float]) -> dict:
    values = [v for v in values if v == v]
    if not values:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values)}


def summarise(seeds: list[dict], configs: list[str]) -> dict:
    """Per configuration (and baseline) and effect kind: r over seeds; null gate rate."""
    table: dict = {}
    for name in configs:
        rows = [s["configs"][name] for s in seeds if name in s["configs"]]
        if not rows:
            continue
        entry = {}
        for kind in (*KINDS, "null"):
            values = []
            for seed, row in zip(seeds, rows, strict=False):
                values += [row["r_dosage"].get("cnn", {}).get(snp, float("nan"))
                           for snp, k in seed["effect_kinds"].items() if k == kind]
            entry[kind] = _spread(values)
        entry["null_gate_pass_rate"] = round(
            sum(len(r["null_gated"]) for r in rows) / max(sum(r["n_null"] for r in rows), 1),
            4)
        entry["median_seconds"] = statistics.median(r["seconds"] for r in rows)
        table[name] = entry
    for model in BASELINES:
        entry = {}
        for kind in (*KINDS, "null"):
            values = []
            for seed in seeds:
                first = next(iter(seed["configs"].values()), None)
                if first is None:
                    continue
                values += [first["r_dosage"].get(model, {}).get(snp, float("nan"))
                           for snp, k in seed["effect_kinds"].items() if k == kind]
            entry[kind] = _spread(values)
        table[model] = entry
    return table


def markdown(summary: dict) -> str:
    """The validation table: median [min, max] over seeds of the held-out r per kind."""
    def cell(v):
        return "n/a" if v["median"] is None else f"{v['median']:.2f} [{v['min']:.2f}, " \
                                                 f"{v['max']:.2f}]"
    lines = ["| source | atlas | blobs | shape | pattern | null | null gated |",
             "|---|---|---|---|---|---|---|"]
    for name, entry in summary.items():
        gate = entry.get("null_gate_pass_rate")
        label = name if name in BASELINES else f"cnn `{name}`"
        lines.append(f"| {label} | " + " | ".join(cell(entry[k]) for k in (*KINDS, "null"))
                     + f" | {'' if gate is None else f'{gate:.1%}'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--effect-size", type=float, nargs=4,
                        default=[80.0, 80.0, 40.0, 40.0], metavar="PERCENT",
                        help="per allele, for atlas, blobs, shape, pattern")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--channels", type=int, nargs=6, default=[8, 16, 32, 32, 32, 16])
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    seeds = []
    for seed in args.seeds:
        with seed_folder(seed, args.keep) as base:
            seeds.append(one_seed(base, seed, args, args.configs))
        partial = {"benchmark": "architecture", "complete": False, "seeds": seeds}
        if args.out:  # what is done so far survives an interrupted run
            emit(partial, args.out)
    summary = summarise(seeds, args.configs)
    emit({"benchmark": "architecture", "complete": True, "machine": machine(),
          "code": code_version(),
          "settings": {"n": args.n, "effect_size_percent": args.effect_size,
                       "resolution_mm": 4, "epochs": args.epochs,
                       "channels": args.channels, "pipeline": "oracle images, true IDPs",
                       "kinds": list(KINDS)},
          "summary": summary, "markdown": markdown(summary), "seeds": seeds,
          "seconds": round(time.perf_counter() - began, 1)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
