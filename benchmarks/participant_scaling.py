"""Participant-level wall time against the number of subjects of one simulated study.

Usage: python benchmarks/participant_scaling.py [--subjects N ...] [--resolution F]
       [--nprocs N] [--omp-nthreads N]; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import linear_fit


def measure(argv: list[str] | None = None) -> dict[str, Any]:
    """Participant-level wall time for 2, 4, 8... subjects of one simulated study."""
    from bgs_app.simulate import SimulationParams, simulate_study

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--resolution", type=float, default=4.0,
                        help="native resolution factor of the simulated scans")
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--omp-nthreads", type=int, default=1)
    parser.add_argument("--registration", choices=("syn", "affine"), default="syn")
    parser.add_argument("--sloppy", action="store_true")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bgs-speed-part-"))
    runs, commands = [], []
    try:
        start = time.perf_counter()
        simulate_study(folder / "study", SimulationParams(
            n_subjects=max(args.subjects), seed=7, resolution=args.resolution),
            nprocs=args.nprocs, progress=False)
        simulate_s = time.perf_counter() - start
        for n in sorted(args.subjects):
            cmd = [sys.executable, "-m", "bgs_app.cli.run", str(folder / "study"),
                   str(folder / f"out-{n}"), "participant", "--participant-label",
                   *[f"{i + 1:04d}" for i in range(n)], "--nprocs", str(args.nprocs),
                   "--omp-nthreads", str(args.omp_nthreads), "-w", str(folder / f"work-{n}"),
                   "--registration", args.registration, "--skip-bids-validation",
                   *(["--sloppy"] if args.sloppy else [])]
            commands.append(shlex.join(cmd))
            log = folder / f"log-{n}.txt"
            start = time.perf_counter()
            with open(log, "w") as fh:
                code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=folder)
            wall = time.perf_counter() - start
            if code != 0:
                raise RuntimeError(f"participant level failed ({code}) for {n} subjects:\n"
                                   + log.read_text()[-3000:])
            runs.append({"subjects": n, "wall_seconds": round(wall, 1),
                         "seconds_per_subject": round(wall / n, 1)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "benchmark": "participant level wall time vs subjects",
        "native_resolution_factor": args.resolution, "nprocs": args.nprocs,
        "omp_nthreads": args.omp_nthreads, "registration": args.registration,
        "sloppy": args.sloppy,
        "simulate_seconds": round(simulate_s, 1), "runs": runs,
        "fit_wall_seconds_vs_subjects": linear_fit(
            [r["subjects"] for r in runs], [r["wall_seconds"] for r in runs]),
        "commands": commands,
    }


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # nothing written inside the repository
    print(json.dumps(measure(), indent=2))
