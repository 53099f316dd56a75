"""Peak memory and time of every node of the participant workflow at 1 mm.

A simulated ~1 mm head goes through ``bgs_app participant`` at ``--resolution 1`` with a
model bundle (``--model``, SFCN with the default channels and ``--snps`` heads, random
weights: memory does not depend on the weights), gradient saliency and its maps in T1w
space (``--saliency-native``), in one process
(``--nprocs 1``). Then every node is run again alone, each in a fresh Python process,
and its peak resident memory is read from the kernel (``wait4``'s ``ru_maxrss``: the
interpreter and its imports included, as a Nipype worker holds them). ``deepbet``'s node
is measured the same way on the same head.

These are the numbers the workflows declare as ``mem_gb`` (see
``bgs_app/workflows/memory.py``); rerun this script when a node changes.

Run::

    python benchmarks/node_memory.py --out benchmarks/results/node_memory.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import code_version, emit, machine

RERUN = """
import sys
from nipype.utils.filemanip import loadpkl
node = loadpkl(sys.argv[1])
node.overwrite = True
node.run()
"""

DEEPBET = """
import sys
from bgs_app.interfaces.deepbet import deepbet_mask
deepbet_mask(sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""


def measured(argv: list[str]) -> tuple[float, float]:
    """Run ``argv``; return its peak resident memory (GB) and wall time (s)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[-1]} failed: {err[-2000:]}")
    return usage.ru_maxrss / 1024**2, wall


def main(argv: list[str] | None = None) -> int:
    import torch

    from bgs_app.grid import grid_metadata
    from bgs_app.model.bundle import save_bundle
    from bgs_app.model.network import SFCN

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=float, default=1.0)
    parser.add_argument("--snps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        study = tmp / "study"
        subprocess.run([sys.executable, "-m", "bgs_app.simulate", str(study), "--n-subjects",
                        "1", "--seed", "5", "--quiet"], check=True)
        torch.manual_seed(0)
        snps = [f"sim{i:02d}" for i in range(1, args.snps + 1)]
        bundle = save_bundle(SFCN(len(snps)).eval(), tmp / "bundle", snps=snps,
                             counted_alleles={s: "A" for s in snps},
                             grid=grid_metadata(args.resolution, "MNI152NLin2009aSym"))
        work = tmp / "work"
        run = [sys.executable, "-m", "bgs_app", str(study), str(tmp / "out"), "participant",
               "--nprocs", "1", "--omp-nthreads", str(args.threads), "--resolution",
               f"{args.resolution:g}", "--model", str(bundle), "--saliency-method",
               "gradient", "--saliency-native", "--skip-bids-validation", "-w", str(work)]
        start = time.perf_counter()
        subprocess.run(run, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        whole = time.perf_counter() - start
        nodes = {}
        for pkl in sorted(work.rglob("_node.pklz")):
            name = pkl.parent.name
            if name.startswith(("ds_", "pick_")) or name in ("merge_outputs",
                                                              "completion_record"):
                continue  # file copies, list picks and records: no work of their own
            peak, wall = measured([sys.executable, "-c", RERUN, str(pkl)])
            nodes[name] = {"peak_gb": round(peak, 3), "seconds": round(wall, 1)}
            print(json.dumps({name: nodes[name]}), file=sys.stderr)
        t1w = next(study.glob("sub-*/anat/*_T1w.nii.gz"))
        peak, wall = measured([sys.executable, "-c", DEEPBET, str(t1w),
                               str(tmp / "deepbet.nii.gz"), str(args.threads)])
        nodes["deepbet_mask"] = {"peak_gb": round(peak, 3), "seconds": round(wall, 1)}
        baseline, _ = measured([sys.executable, "-c", "import nipype, bgs_app.workflows"])
    result = {"benchmark": "node_memory", **code_version(), "machine": machine(),
              "resolution_mm": args.resolution, "snps": args.snps, "threads": args.threads,
              "participant_run_s": round(whole, 1),
              "interpreter_with_imports_gb": round(baseline, 3),
              "nodes": dict(sorted(nodes.items(), key=lambda kv: -kv[1]["peak_gb"]))}
    emit(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
