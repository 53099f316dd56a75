"""Benchmark bgs-simulate: seconds per participant at 1 mm native and study size on disk.

Usage: python benchmarks/simulate_speed.py [--n-subjects 8] [--repeats 3] [--nprocs 2]
Prints JSON: median seconds per participant (images and truth written, setup excluded),
setup seconds, and the projected size of a 400-participant study.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from _common import machine

import bgs_app.simulate.study as study
from bgs_app.simulate import SimulationParams, simulate_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-subjects", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--resolution", type=float, default=1.0)
    args = parser.parse_args()

    per_subject, setup, sizes = [], [], []
    original = study._run_tasks

    def timed(tasks, nprocs, progress):
        start = time.perf_counter()
        out = original(tasks, nprocs, progress)
        per_subject.append((time.perf_counter() - start) / len(tasks))
        return out

    study._run_tasks = timed
    for repeat in range(args.repeats):
        folder = Path(tempfile.mkdtemp(prefix="bgs-sim-bench-"))
        start = time.perf_counter()
        simulate_study(folder / "study", SimulationParams(
            n_subjects=args.n_subjects, seed=repeat, resolution=args.resolution),
            nprocs=args.nprocs, progress=False)
        total = time.perf_counter() - start
        setup.append(total - per_subject[-1] * args.n_subjects)
        sizes.append(sum(p.stat().st_size for p in (folder / "study").rglob("*")
                         if p.is_file()))
        shutil.rmtree(folder)
    per_mb = statistics.median(sizes) / args.n_subjects / 1e6
    print(json.dumps({
        "benchmark": "bgs-simulate",
        "machine": machine(),
        "nprocs": args.nprocs, "resolution": args.resolution,
        "n_subjects": args.n_subjects, "repeats": args.repeats,
        "seconds_per_subject_median": round(statistics.median(per_subject), 3),
        "seconds_per_subject_runs": [round(v, 3) for v in per_subject],
        "setup_seconds_median": round(statistics.median(setup), 2),
        "mb_per_subject": round(per_mb, 2),
        "projected_400_subject_study_gb": round(per_mb * 400 / 1000, 2),
    }, indent=2))


if __name__ == "__main__":
    main()
