"""Benchmark the participant level: wall time per subject and time per step.

Usage: python benchmarks/participant_speed.py [--n-subjects 3] [--resolution 1]
       [--peer-resolution 1]
Simulates a study at 1 mm native resolution, runs ``bgs_app participant`` with default
settings (one subject at a time, 2 threads), and prints JSON: per-subject wall times
(median), the median time of every Nipype step, the brain-mask Dice against the truth,
and, as a peer, ``ants.registration`` with antsRegistrationSyNQuick settings run by hand
on the same bias-corrected image, to the template at --peer-resolution mm (2: the grid
the participant level itself registers on; much cheaper).
"""

from __future__ import annotations

import argparse
import gzip
import json
import pickle
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import nibabel as nb
import numpy as np
from _common import machine

from bgs_app.bids.derivatives import derivative_path


def node_times(work: Path) -> dict[str, list[float]]:
    """Durations of every Nipype node, from the result files in the work folder."""
    times: dict[str, list[float]] = defaultdict(list)
    for result in work.rglob("result_*.pklz"):
        try:
            with gzip.open(result) as fh:
                res = pickle.load(fh)  # our own work folder, written by this run
        except Exception:
            continue
        runtime = res.runtime
        runtimes = runtime if isinstance(runtime, list) else [runtime]
        duration = sum(getattr(r, "duration", 0.0) or 0.0 for r in runtimes)
        if "mapflow" in str(result):
            continue
        times[result.parent.name].append(duration)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n-subjects", type=int, default=3)
    parser.add_argument("--resolution", type=float, default=1.0,
                        help="native resolution factor of the simulated scans")
    parser.add_argument("--omp-nthreads", type=int, default=2)
    parser.add_argument("--peer-resolution", type=int, choices=(1, 2), default=1,
                        help="template resolution (mm) of the peer registration")
    args = parser.parse_args()

    from bgs_app.cli.run import main as bgs_main
    from bgs_app.simulate import SimulationParams, simulate_study

    root = Path(tempfile.mkdtemp(prefix="bgs-part-bench-"))
    simulate_study(root / "study", SimulationParams(n_subjects=args.n_subjects, seed=7,
                                                    resolution=args.resolution),
                   nprocs=2, progress=False)
    walls = []
    for i in range(args.n_subjects):
        label = f"{i + 1:04d}"
        start = time.perf_counter()
        code = bgs_main([str(root / "study"), str(root / "out"), "participant",
                         "--participant-label", label, "--nprocs", "1", "--omp-nthreads",
                         str(args.omp_nthreads), "-w", str(root / "work"),
                         "--skip-bids-validation"])
        walls.append(time.perf_counter() - start)
        assert code == 0, f"participant level failed for sub-{label}"
    steps = {k: round(statistics.median(v), 2) for k, v in
             sorted(node_times(root / "work").items(), key=lambda kv: -statistics.median(kv[1]))}
    dice = []
    for i in range(args.n_subjects):
        label = f"{i + 1:04d}"
        est = np.asarray(nb.load(derivative_path(root / "out", {"sub": label, "desc": "brain"},
                                                 "mask", ".nii.gz")).dataobj) > 0
        truth = np.asarray(nb.as_closest_canonical(nb.load(derivative_path(
            root / "study/derivatives/simulation-truth", {"sub": label, "desc": "truth"},
            "mask", ".nii.gz"))).dataobj) > 0
        dice.append(round(float(2 * (est & truth).sum() / (est.sum() + truth.sum())), 4))

    # Peer: antsRegistrationSyNQuick-like registration of the same image, by hand.
    import os

    os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(args.omp_nthreads)
    import ants

    from bgs_app.templates import get_template

    template = get_template()
    n4 = ants.image_read(str(derivative_path(root / "out", {"sub": "0001", "desc": "preproc"},
                                             "T1w", ".nii.gz")))
    start = time.perf_counter()
    fixed = template.t1w if args.peer_resolution == 1 else template.t1w_reg
    ants.registration(ants.image_read(str(fixed)), n4,
                      type_of_transform="antsRegistrationSyNQuick[s]")
    peer = time.perf_counter() - start
    print(json.dumps({
        "benchmark": "participant level",
        "machine": machine(),
        "settings": {"registration": "syn", "omp_nthreads": args.omp_nthreads,
                     "native_resolution_factor": args.resolution},
        "n_subjects": args.n_subjects,
        "seconds_per_subject_median": round(statistics.median(walls), 1),
        "seconds_per_subject_runs": [round(w, 1) for w in walls],
        "step_seconds_median": steps,
        "brain_mask_dice": dice,
        f"peer_antsRegistrationSyNQuick_whole_head_{args.peer_resolution}mm_seconds":
            round(peer, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
