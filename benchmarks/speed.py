"""Measure bgs_app's speed in one run: every benchmark, the ratios to peers, and scaling.

Usage: python benchmarks/speed.py [--quick] [--only NAME ...] [--out FILE]
       [--threads N] [--timeout SECONDS] [--dry-run] [--verbose]
The runner only: it runs every benchmark script of ``benchmarks/`` (one measurement
each, printing one JSON object) as a subprocess of this interpreter, with full-size
options (or tiny ones with ``--quick``, which only checks that everything runs, in a few
minutes), among them ``store_speed.py`` (tensor-store reads against nibabel ``.nii.gz``
loading), ``training_scaling.py`` (group training time per epoch against the number of
subjects, 3 mm, CPU) and ``participant_scaling.py`` (participant-level wall time against
the number of subjects, 4 mm scans, ``--nprocs`` = --threads).

Prints one JSON object: the date, the machine (CPU model, cores, RAM, load average,
torch, GPU), the exact sub-commands, each part's own JSON (``parts``), each part as a
ratio to its peer where one exists (``ratios``: participant level vs ``ants.registration``
run by hand with antsRegistrationSyNQuick settings, tensor store vs nibabel, vectorised
associations vs a statsmodels loop, CUDA vs CPU) and the scaling fits (``scaling``).
Temporary data go to one temporary folder (``TMPDIR`` of every part), removed at the end;
nothing is written in the repository except ``--out``. Exits 1 when a part failed (its
entry says why; the others still run).

Parts: participant, participant_scaling, simulate, genotypes, associations, store,
training, training_scaling, scoring, and, only where torch sees a GPU, training_cuda and
scoring_cuda. A full run takes about half an hour on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, when imported
from _common import HERE, REPO, code_version, kill_group, last_json, machine  # noqa: E402


@dataclass(frozen=True)
class Part:
    """One measurement: a script of ``benchmarks/`` and its options."""

    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    what: str
    cuda: bool = False

    def argv(self, quick: bool) -> list[str]:
        """The exact command line of this part."""
        args = self.quick if quick else self.full
        return [sys.executable, str(HERE / self.script), *args]


def parts(threads: int) -> list[Part]:
    """Every part, cheapest first, with full-size and ``--quick`` options."""
    t = str(threads)
    return [
        Part("associations", "associations_speed.py",
             ("--scores", "1000", "--measures", "10", "--subjects", "10000",
              "--loop-tests", "300"),
             ("--scores", "20", "--measures", "3", "--subjects", "500", "--loop-tests", "20"),
             "association table: vectorised vs a statsmodels OLS loop"),
        Part("genotypes", "genotype_read.py",
             ("--people", "100000", "--snps", "2000", "--read-people", "10000",
              "--read-snps", "20", "--repeats", "5"),
             ("--people", "2000", "--snps", "100", "--read-people", "500", "--read-snps", "5",
              "--repeats", "2"),
             "genotype reading (read, match, QC)"),
        Part("store", "store_speed.py",
             ("--volumes", "128", "--resolution", "2", "--repeats", "3", "--threads", t),
             ("--volumes", "8", "--resolution", "4", "--repeats", "1", "--threads", t),
             "tensor-store reads vs nibabel .nii.gz loading"),
        Part("training", "train_throughput.py",
             ("--device", "cpu", "--resolutions", "3", "2", "--batch", "4", "--steps", "5",
              "--store-volumes", "64", "--workers", "2"),
             ("--device", "cpu", "--resolutions", "4", "--batch", "2", "--steps", "1",
              "--store-volumes", "8", "--workers", "0"),
             "training throughput on the CPU, FLOPs, DataLoader reads"),
        Part("training_cuda", "train_throughput.py",
             ("--device", "cuda", "--resolutions", "2", "1", "--batch", "4", "--steps", "20",
              "--store-volumes", "256", "--workers", "4"),
             ("--device", "cuda", "--resolutions", "4", "--batch", "2", "--steps", "2",
              "--store-volumes", "8", "--workers", "0"),
             "training throughput on the GPU (bf16)", cuda=True),
        Part("training_scaling", "training_scaling.py",
             ("--sizes", "32", "64", "128", "--resolution", "3", "--epochs", "2",
              "--threads", t),
             ("--sizes", "6", "10", "--resolution", "4", "--epochs", "1", "--batch-size",
              "2", "--threads", t),
             "group training seconds per epoch vs subjects (CPU)"),
        Part("scoring", "scoring_speed.py",
             ("--resolution", "2", "--repeats", "3", "--threads", t, "--ig-steps", "32",
              "--device", "cpu"),
             ("--resolution", "4", "--repeats", "1", "--threads", t, "--ig-steps", "2",
              "--device", "cpu"),
             "scoring and saliency per subject on the CPU"),
        Part("scoring_cuda", "scoring_speed.py",
             ("--resolution", "2", "--repeats", "5", "--ig-steps", "32", "--device", "cuda"),
             ("--resolution", "4", "--repeats", "1", "--ig-steps", "2", "--device", "cuda"),
             "scoring and saliency per subject on the GPU", cuda=True),
        Part("simulate", "simulate_speed.py",
             ("--n-subjects", "8", "--repeats", "3", "--nprocs", t, "--resolution", "1"),
             ("--n-subjects", "2", "--repeats", "1", "--nprocs", t, "--resolution", "4"),
             "bgs-simulate seconds per participant"),
        Part("participant", "participant_speed.py",
             ("--n-subjects", "3", "--resolution", "1", "--omp-nthreads", t,
              "--peer-resolution", "1"),
             ("--n-subjects", "1", "--resolution", "4", "--omp-nthreads", t,
              "--peer-resolution", "2"),
             "participant level per subject and per step, and ants.registration by hand"),
        Part("participant_scaling", "participant_scaling.py",
             ("--subjects", "2", "4", "8", "--resolution", "4", "--nprocs", t,
              "--omp-nthreads", "1"),
             ("--subjects", "2", "--resolution", "4", "--nprocs", t, "--omp-nthreads", "1",
              "--registration", "affine", "--sloppy"),
             "participant-level wall time vs subjects"),
    ]


# --------------------------------------------------------------------------------------
# The driver


def run_part(part: Part, quick: bool, tmp: Path, timeout: float | None,
             verbose: bool) -> dict[str, Any]:
    """Run one part as a subprocess (cwd and TMPDIR in ``tmp``); its entry in ``parts``."""
    argv = part.argv(quick)
    work = tmp / part.name
    work.mkdir()
    env = {**os.environ, "TMPDIR": str(work), "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO),
                                                       os.environ.get("PYTHONPATH")]))}
    log = work.parent / f"{part.name}.stderr"
    entry: dict[str, Any] = {"status": "failed", "what": part.what,
                             "command": shlex.join(argv)}
    start = time.perf_counter()
    with open(log, "w") as err:
        proc = subprocess.Popen(argv, cwd=work, env=env, stdout=subprocess.PIPE,
                                stderr=None if verbose else err, text=True,
                                start_new_session=True)
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(proc)
            stdout, entry["error"] = "", f"timed out after {timeout:g} s"
        except BaseException:  # Ctrl-C: the part's whole process group goes too
            kill_group(proc)
            raise
    entry["seconds"] = round(time.perf_counter() - start, 1)
    entry["returncode"] = proc.returncode
    if "error" not in entry and proc.returncode == 0:
        try:
            entry["result"] = last_json(stdout)
            entry["status"] = "ok"
        except ValueError as problem:
            entry["error"] = str(problem)
    if entry["status"] != "ok":
        entry.setdefault("error", f"exit code {proc.returncode}")
        entry["stderr_tail"] = "" if verbose else log.read_text(errors="replace")[-3000:]
        entry["stdout_tail"] = stdout[-1000:]
    shutil.rmtree(work, ignore_errors=True)
    return entry


def _comparison(ours: str, peer: str, ours_s: float, peer_s: float,
                note: str | None = None, speedup: float | None = None) -> dict[str, Any]:
    """One ratio; ``speedup`` (peer time / ours) when the part computed it unrounded."""
    if speedup is None and ours_s and peer_s:
        speedup = peer_s / ours_s
    out = {"ours": ours, "peer": peer, "ours_seconds": ours_s, "peer_seconds": peer_s,
           "time_ratio_ours_over_peer": round(1 / speedup, 4) if speedup else None,
           "speedup_vs_peer": round(speedup, 2) if speedup else None}
    return {**out, "note": note} if note else out


def ratios(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Each measurement as a ratio to its peer (speedup_vs_peer > 1: ours is faster)."""
    out: dict[str, Any] = {}
    if "participant" in results:
        r = results["participant"]
        key = next(k for k in r if k.startswith("peer_antsRegistrationSyNQuick"))
        peer = r[key]
        out["participant_vs_ants_registration"] = _comparison(
            "bgs_app participant level, whole pipeline, median seconds per subject",
            f"ants.registration antsRegistrationSyNQuick[s] by hand, one image ({key})",
            r["seconds_per_subject_median"], peer,
            "the participant level also runs N4, brain masks, Atropos, IDPs and model grid")
        out["participant_steps_over_ants_registration"] = {
            step: round(seconds / peer, 3) for step, seconds in r["step_seconds_median"].items()
            if seconds >= 0.05}
        registration = sum(v for k, v in r["step_seconds_median"].items()
                           if k.startswith("register_"))
        out["participant_registration_steps_vs_ants_registration"] = _comparison(
            "bgs_app registration steps (register_*), median seconds per subject",
            f"ants.registration antsRegistrationSyNQuick[s] by hand ({key})",
            round(registration, 2), peer)
    if "store" in results:
        r = results["store"]
        out["store_vs_nibabel"] = _comparison(
            "tensor store, seconds per volume read (float16 memory map to float32)",
            "nibabel .nii.gz loading, seconds per volume (get_fdata float32)",
            r["store_seconds_per_volume"], r["nibabel_seconds_per_volume"],
            f"{r['grid']} grid, warm page cache")
    if "associations" in results:
        r = results["associations"]
        out["associations_vectorised_vs_statsmodels"] = _comparison(
            f"bgs_app.stats.associate, all {r['tests']} tests",
            f"statsmodels OLS loop, {r['statsmodels_loop_tests_timed']} tests timed, "
            "extrapolated to all", r["vectorised_seconds"],
            r["statsmodels_loop_seconds_extrapolated"], speedup=r.get("speedup"))
    if "training" in results:
        store = results["training"].get("store", {})
        out["training_store_reads_vs_training_demand"] = {
            k: v for k, v in store.items() if k.startswith("ratio_")}
    if "training" in results and "training_cuda" in results:
        cpu = {t["resolution_mm"]: t for t in results["training"]["throughput"]}
        for t in results["training_cuda"]["throughput"]:
            if t["resolution_mm"] in cpu:
                c = cpu[t["resolution_mm"]]
                out[f"training_cuda_vs_cpu_{t['resolution_mm']:g}mm"] = _comparison(
                    "CUDA seconds per training volume", "CPU seconds per training volume",
                    round(1 / t["volumes_per_s"], 4), round(1 / c["volumes_per_s"], 4))
    if "scoring" in results and "scoring_cuda" in results:
        c, g = results["scoring"], results["scoring_cuda"]
        if c["resolution_mm"] == g["resolution_mm"]:
            for key in [k for k in g if k.endswith(("_s_per_subject", "_s_per_snp"))]:
                out[f"scoring_cuda_vs_cpu_{key}"] = _comparison(
                    f"CUDA {key}", f"CPU {key}", round(g[key], 4), round(c[key], 4))
    return out


def scaling(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The scaling measurements and their linear fits."""
    out: dict[str, Any] = {}
    if "participant_scaling" in results:
        r = results["participant_scaling"]
        out["participant_wall_seconds_vs_subjects"] = {
            "nprocs": r["nprocs"], "native_resolution_factor": r["native_resolution_factor"],
            "points": [[x["subjects"], x["wall_seconds"]] for x in r["runs"]],
            "fit": r["fit_wall_seconds_vs_subjects"]}
    if "training_scaling" in results:
        r = results["training_scaling"]
        out["training_epoch_seconds_vs_subjects"] = {
            "resolution_mm": r["resolution_mm"], "device": r["device"],
            "points": [[x["subjects"], x["epoch_seconds_last"]] for x in r["runs"]],
            "fit": r["fit_epoch_seconds_vs_subjects"]}
    return out


def _say(message: str) -> None:
    print(f"speed.py: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
        os.cpu_count() or 1)
    names = [p.name for p in parts(1)]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="parts: " + ", ".join(names))
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, only to check that everything runs")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=names,
                        help="run these parts only")
    parser.add_argument("--out", type=Path, metavar="FILE",
                        help="also write the JSON to FILE")
    parser.add_argument("--threads", type=int, default=usable,
                        help=f"threads and processes per part (default: usable cores, {usable})")
    parser.add_argument("--timeout", type=float, metavar="SECONDS",
                        help="give up on a part after this long (default: no limit)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the JSON with the commands only; run nothing")
    parser.add_argument("--verbose", action="store_true",
                        help="show the parts' logs (stderr) as they run")
    args = parser.parse_args(argv)

    import torch

    cuda = torch.cuda.is_available()
    chosen = [p for p in parts(args.threads) if not args.only or p.name in args.only]
    report: dict[str, Any] = {
        "benchmark": "bgs_app speed (benchmarks/speed.py)",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "command": shlex.join([sys.executable, *sys.argv]),
        "machine": machine(), **code_version(),
        "commands": {p.name: shlex.join(p.argv(args.quick)) for p in chosen},
        "parts": {},
    }
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bgs-speed-"))
    report["temporary_folder"] = f"{tmp} (removed)"
    try:
        for i, part in enumerate(chosen, 1):
            if args.dry_run:
                continue
            if part.cuda and not cuda:
                report["parts"][part.name] = {"what": part.what, "status": "skipped",
                                              "reason": "torch sees no CUDA device"}
                report["commands"][part.name] = None
                _say(f"[{i}/{len(chosen)}] {part.name}: skipped (torch sees no CUDA device)")
                continue
            _say(f"[{i}/{len(chosen)}] {part.name}: {report['commands'][part.name]}")
            entry = run_part(part, args.quick, tmp, args.timeout, args.verbose)
            report["parts"][part.name] = entry
            _say(f"[{i}/{len(chosen)}] {part.name}: {entry['status']} in {entry['seconds']} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    results = {k: v["result"] for k, v in report["parts"].items() if v["status"] == "ok"}
    for key, summary in (("ratios", ratios), ("scaling", scaling)):
        try:
            report[key] = summary(results)
        except (KeyError, StopIteration, TypeError, ZeroDivisionError) as problem:
            report[key] = {"error": f"{type(problem).__name__}: {problem} (a part's JSON "
                                    "changed shape?)"}
    report["load_average_1_5_15_at_end"] = [round(v, 2) for v in os.getloadavg()]
    report["total_seconds"] = round(time.perf_counter() - began, 1)
    failed = [k for k, v in report["parts"].items() if v["status"] == "failed"]
    report["failed"] = failed
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.dont_write_bytecode = True  # nothing written inside the repository
    sys.exit(main())
