"""Time to index one participant of a large BIDS dataset with pybids.

A job array over a cohort runs one task per participant; each task indexes the dataset.
This script builds a dataset of ``--subjects`` participants (each a T1w with its JSON
sidecar, two sessions; tiny images, since pybids reads names, not voxels) and times
:func:`bgs_app.bids.inputs.get_layout` for one ``--participant-label``:

- ``one_participant``: as bgs_app does without ``--bids-database-dir`` (only the
  requested participant's folder is indexed, as fMRIPrep does);
- ``whole_dataset``: the previous behaviour (every folder indexed; what a task without
  ``--participant-label`` still does);
- ``database_reuse``: a ``--bids-database-dir`` built once, then loaded.

It prints one JSON object with the median and spread over ``--repeats`` runs.

Run::

    python benchmarks/bids_index.py --subjects 2000 --repeats 5 \
        --out benchmarks/results/bids_index.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nb
import numpy as np
from _common import code_version, emit, machine


def make_dataset(root: Path, n: int, sessions: int = 2) -> None:
    """A BIDS dataset of ``n`` participants with tiny T1w images and sidecars."""
    root.mkdir(parents=True)
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "index benchmark", "BIDSVersion": "1.9.0"}))
    tiny = root / "_tiny.nii.gz"
    nb.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)).to_filename(tiny)
    data = tiny.read_bytes()
    tiny.unlink()
    lines = ["participant_id\tage"]
    for i in range(1, n + 1):
        sub = f"sub-{i:05d}"
        lines.append(f"{sub}\t{40 + i % 30}")
        for s in range(1, sessions + 1):
            anat = root / sub / f"ses-{s}" / "anat"
            anat.mkdir(parents=True)
            stem = f"{sub}_ses-{s}_T1w"
            (anat / f"{stem}.nii.gz").write_bytes(data)
            (anat / f"{stem}.json").write_text('{"RepetitionTime": 2.0}')
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")


def timed(fn, repeats: int) -> dict:
    values = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        values.append(time.perf_counter() - start)
    return {"median_s": round(statistics.median(values), 3),
            "min_s": round(min(values), 3), "max_s": round(max(values), 3),
            "runs": len(values)}


def main(argv: list[str] | None = None) -> int:
    from bgs_app.bids.inputs import collect_t1w, get_layout, select_subjects

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    label = f"{args.subjects // 2:05d}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ds"
        start = time.perf_counter()
        make_dataset(root, args.subjects)
        made = time.perf_counter() - start

        def one():
            layout = get_layout(root, None, [label])
            subjects = select_subjects(layout, [label])
            assert len(collect_t1w(layout, subjects, None, None)) == 2

        def whole():
            layout = get_layout(root, None, None)
            assert len(collect_t1w(layout, [label], None, None)) == 2

        db = Path(tmp) / "db"
        start = time.perf_counter()
        get_layout(root, db, None)
        build = time.perf_counter() - start

        def reuse():
            layout = get_layout(root, db, [label])
            assert len(collect_t1w(layout, [label], None, None)) == 2

        result = {
            "benchmark": "bids_index", **code_version(), "machine": machine(),
            "subjects": args.subjects, "sessions_per_subject": 2,
            "files": 4 * args.subjects, "dataset_written_s": round(made, 1),
            "one_participant": timed(one, args.repeats),
            "whole_dataset": timed(whole, max(1, min(args.repeats, 3))),
            "database_build_s": round(build, 3),
            "database_reuse": timed(reuse, args.repeats),
        }
    result["speed_up_one_vs_whole"] = round(result["whole_dataset"]["median_s"]
                                            / result["one_participant"]["median_s"], 1)
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
