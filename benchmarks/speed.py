"""Measure bgs_app's speed in one run: every benchmark, the ratios to peers, and scaling.

Usage: python benchmarks/speed.py [--quick] [--only NAME ...] [--out FILE]
       [--threads N] [--timeout SECONDS] [--dry-run] [--verbose]
       python benchmarks/speed.py --part {store,training_scaling,participant_scaling} ...
       (one of its own parts alone; add --help for that part's options)
Runs every benchmark script of ``benchmarks/`` as a subprocess of this interpreter, with
full-size options (or tiny ones with ``--quick``, which only checks that everything runs,
in a few minutes), and three measurements of its own, run the same way as
``speed.py --part NAME ...``: tensor-store reads against nibabel ``.nii.gz`` loading
(``store``), group training time per epoch against the number of subjects
(``training_scaling``, 3 mm, CPU) and participant-level wall time against the number of
subjects (``participant_scaling``, 4 mm scans, ``--nprocs`` = --threads).

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
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO))


@dataclass(frozen=True)
class Part:
    """One measurement: a script of ``benchmarks/`` (or ``speed.py --part``) and its options."""

    name: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    what: str
    cuda: bool = False

    def argv(self, quick: bool) -> list[str]:
        """The exact command line of this part."""
        args = self.quick if quick else self.full
        internal = ("--part", self.name) if self.script == "speed.py" else ()
        return [sys.executable, str(HERE / self.script), *internal, *args]


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
        Part("store", "speed.py",
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
        Part("training_scaling", "speed.py",
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
        Part("participant_scaling", "speed.py",
             ("--subjects", "2", "4", "8", "--resolution", "4", "--nprocs", t,
              "--omp-nthreads", "1"),
             ("--subjects", "2", "--resolution", "4", "--nprocs", t, "--omp-nthreads", "1",
              "--registration", "affine", "--sloppy"),
             "participant-level wall time vs subjects"),
    ]


# --------------------------------------------------------------------------------------
# Helpers


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict[str, float] | None:
    """Least-squares ``y = intercept + slope * x`` and its R² (None under two points)."""
    if len(set(x)) < 2:
        return None
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    pred = intercept + slope * np.asarray(x, float)
    ss_res = float(((np.asarray(y) - pred) ** 2).sum())
    ss_tot = float(((np.asarray(y) - np.mean(y)) ** 2).sum())
    return {"intercept_seconds": round(float(intercept), 3),
            "slope_seconds_per_subject": round(float(slope), 3),
            "r2": round(1 - ss_res / ss_tot, 4) if ss_tot > 0 else 1.0}


def _template_on_grid(resolution: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The packaged template's T1w and brain mask on the model grid, and its affine."""
    import nibabel as nb
    from nilearn.image import resample_img

    from bgs_app.templates import get_template, model_grid

    shape, affine = model_grid(resolution)
    tpl = get_template()
    t1 = resample_img(nb.load(tpl.t1w), target_affine=affine, target_shape=shape,
                      force_resample=True, copy_header=True).get_fdata(dtype=np.float32)
    mask = resample_img(nb.load(tpl.mask), target_affine=affine, target_shape=shape,
                        interpolation="nearest", force_resample=True,
                        copy_header=True).get_fdata() > 0
    return t1, mask, affine


def write_model_grid_images(folder: Path, n: int, resolution: float,
                            seed: int = 0) -> list[Path]:
    """``n`` model-grid images like the participant level's (float32 .nii.gz, brain only,
    mean 1 in the brain): the template brain with a smooth random intensity field and
    noise per subject, so that gzip sees realistic content."""
    import nibabel as nb
    from scipy.ndimage import gaussian_filter

    t1, mask, affine = _template_on_grid(resolution)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        field = gaussian_filter(rng.standard_normal(t1.shape, dtype=np.float32),
                                sigma=8.0 / resolution)
        field *= 0.1 / max(float(field.std()), 1e-6)
        data = t1 * (1.0 + field) + rng.normal(0, 0.03 * float(t1[mask].mean()),
                                               t1.shape).astype(np.float32)
        data[~mask] = 0.0
        data /= float(data[mask].mean())
        img = nb.Nifti1Image(data.astype(np.float32), affine)
        img.header.set_xyzt_units("mm", "sec")
        path = folder / f"sub-{i + 1:04d}_space-model_res-{resolution:g}mm_T1w.nii.gz"
        img.to_filename(path)
        paths.append(path)
    return paths


def _build_store(paths: list[Path], folder: Path, threads: int):
    from bgs_app.model.store import StoreItem, build_store

    items = [StoreItem(f"sub-{i + 1:04d}", None, p) for i, p in enumerate(paths)]
    return build_store(items, folder, nprocs=threads, progress=False)


# --------------------------------------------------------------------------------------
# Parts of this script (run as subprocesses: ``speed.py --part NAME ...``)


def part_store(argv: list[str]) -> dict[str, Any]:
    """Tensor-store reads vs nibabel .nii.gz loading of the same model-grid images."""
    import nibabel as nb

    parser = argparse.ArgumentParser(prog="speed.py --part store")
    parser.add_argument("--volumes", type=int, default=128)
    parser.add_argument("--resolution", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="threads building the store")
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp(prefix="bgs-speed-store-"))
    try:
        start = time.perf_counter()
        paths = write_model_grid_images(folder / "nifti", args.volumes, args.resolution)
        write_s = time.perf_counter() - start
        start = time.perf_counter()
        store = _build_store(paths, folder / "store", args.threads)
        build_s = time.perf_counter() - start
        grid = list(store.grid["shape"])
        order = np.random.default_rng(1).permutation(args.volumes)

        def read_nifti() -> None:
            for i in order:
                nb.load(paths[i]).get_fdata(dtype=np.float32)

        def read_store() -> None:
            for i in order:
                store[int(i)]

        nifti_s = _median_seconds(read_nifti, args.repeats) / args.volumes
        store_s = _median_seconds(read_store, args.repeats) / args.volumes
        nifti_mb = statistics.median(p.stat().st_size for p in paths) / 1e6
        store_mb = (folder / "store/volumes.f16").stat().st_size / args.volumes / 1e6
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "benchmark": "tensor-store reads vs nibabel .nii.gz loading",
        "volumes": args.volumes, "resolution_mm": args.resolution,
        "grid": grid, "repeats": args.repeats,
        "page_cache": "warm for both (files just written, one warm-up pass)",
        "nifti_mb_per_volume": round(nifti_mb, 3), "store_mb_per_volume": round(store_mb, 3),
        "write_nifti_seconds": round(write_s, 2), "build_store_seconds": round(build_s, 2),
        "nibabel_seconds_per_volume": round(nifti_s, 6),
        "store_seconds_per_volume": round(store_s, 6),
        "nibabel_volumes_per_s": round(1 / nifti_s, 1),
        "store_volumes_per_s": round(1 / store_s, 1),
        "store_speedup": round(nifti_s / store_s, 1),
    }


def part_training_scaling(argv: list[str]) -> dict[str, Any]:
    """Group training time per epoch for stores of several sizes (the app's training loop)."""
    import pandas as pd
    import torch

    from bgs_app.model.train import TrainConfig, train_model

    parser = argparse.ArgumentParser(prog="speed.py --part training_scaling")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128],
                        help="subjects in the store (train + validation + test)")
    parser.add_argument("--resolution", type=float, default=3.0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--val-fraction", type=float, default=0.1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    n_max = max(args.sizes)
    snps = [f"rs{i}" for i in range(12)]
    dosages = np.random.default_rng(0).binomial(2, 0.3, (n_max, len(snps))).astype(np.float32)
    folder = Path(tempfile.mkdtemp(prefix="bgs-speed-train-"))
    runs = []
    try:
        paths = write_model_grid_images(folder / "nifti", n_max, args.resolution)
        store = _build_store(paths, folder / "store", args.threads)
        grid = list(store.grid["shape"])
        for n in sorted(args.sizes):
            n_test = max(1, round(n * args.test_fraction))
            n_val = max(2, round(n * args.val_fraction))
            train = np.arange(n - n_test - n_val)
            val = np.arange(len(train), len(train) + n_val)
            cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size,
                              device=args.device, patience=args.epochs + 1)
            start = time.perf_counter()
            _, log = train_model(store, train, dosages[train], val, dosages[val], snps,
                                 folder / f"train-{n}", cfg)
            total = time.perf_counter() - start
            seconds = pd.to_numeric(log["seconds"]).tolist()
            runs.append({"subjects": n, "train": len(train), "val": n_val,
                         "epoch_seconds": [round(s, 2) for s in seconds],
                         "epoch_seconds_last": round(seconds[-1], 2),
                         "seconds_per_training_volume": round(seconds[-1] / len(train), 3),
                         "total_seconds_incl_setup": round(total, 2)})
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "benchmark": "group training seconds per epoch vs subjects",
        "resolution_mm": args.resolution, "grid": grid, "device": args.device,
        "threads": args.threads, "batch_size": args.batch_size, "epochs": args.epochs,
        "snps": len(snps), "num_workers": 0,
        "epoch": "one pass over the training volumes (augmented) + validation predictions",
        "runs": runs,
        "fit_epoch_seconds_vs_subjects": linear_fit(
            [r["subjects"] for r in runs], [r["epoch_seconds_last"] for r in runs]),
    }


def part_participant_scaling(argv: list[str]) -> dict[str, Any]:
    """Participant-level wall time for 2, 4, 8... subjects of one simulated study."""
    from bgs_app.simulate import SimulationParams, simulate_study

    parser = argparse.ArgumentParser(prog="speed.py --part participant_scaling")
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


INTERNAL: dict[str, Callable[[list[str]], dict[str, Any]]] = {
    "store": part_store,
    "training_scaling": part_training_scaling,
    "participant_scaling": part_participant_scaling,
}


# --------------------------------------------------------------------------------------
# The driver


def machine() -> dict[str, Any]:
    """CPU model, cores, RAM, load, Python, torch and GPU of this machine."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        text = Path("/proc/cpuinfo").read_text()
        found = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        cpu = found.group(1).strip() if found else cpu
    except OSError:
        pass
    try:
        kb = int(re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(),
                           re.M).group(1))
        ram_gb = round(kb / 1024**2, 1)
    except (OSError, AttributeError):
        ram_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3, 1)
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    cuda = torch.cuda.is_available()
    return {
        "hostname": platform.node(), "cpu_model": cpu, "cores_logical": os.cpu_count(),
        "cores_usable": usable, "ram_gb": ram_gb,
        "load_average_1_5_15_at_start": [round(v, 2) for v in os.getloadavg()],
        "platform": platform.platform(), "python": platform.python_version(),
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "cuda": torch.version.cuda if cuda else None,
    }


def _code_version() -> dict[str, str | None]:
    from bgs_app.__about__ import __version__

    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"bgs_app": __version__, "git_commit": commit or None}


def last_json(text: str) -> dict[str, Any]:
    """The JSON object that ends ``text`` (scripts may log before it)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    decoder = json.JSONDecoder()
    for match in reversed(list(re.finditer(r"^\{", text, re.M))):
        try:
            obj, end = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        if not text[end:].strip() and isinstance(obj, dict):
            return obj
    raise ValueError("no JSON object at the end of the output")


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill a part and everything it started (it leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


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
            _kill_group(proc)
            stdout, entry["error"] = "", f"timed out after {timeout:g} s"
        except BaseException:  # Ctrl-C: the part's whole process group goes too
            _kill_group(proc)
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
    if argv[:1] == ["--part"]:  # one of this script's own parts, in its own process
        if len(argv) < 2 or argv[1] not in INTERNAL:
            print(f"--part needs one of {', '.join(INTERNAL)}", file=sys.stderr)
            return 2
        print(json.dumps(INTERNAL[argv[1]](argv[2:]), indent=2))
        return 0

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
        "machine": machine(), **_code_version(),
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
