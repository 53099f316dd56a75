"""What every benchmark script shares: the machine description, timing, fits, and
model-grid images and tensor stores made for measuring.

Each script of ``benchmarks/`` prints one JSON object; those that describe the machine
use :func:`machine` (one set of keys everywhere), so results of different scripts and
days can be compared.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


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


def emit(result: dict[str, Any], out: Path | None = None) -> None:
    """Print a benchmark's JSON object, and write it atomically to ``out`` when given (a
    killed run leaves the previous result, never half a file)."""
    text = json.dumps(result, indent=1)
    print(text)
    if out is not None:
        from bgs_app.utils.atomic import write_text

        write_text(Path(out), text + "\n")


def code_version() -> dict[str, str | None]:
    from bgs_app.__about__ import __version__

    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"bgs_app": __version__, "git_commit": commit or None}


@contextlib.contextmanager
def seed_folder(seed: int, keep: Path | None = None, prefix: str = "bgs-bench-"
                ) -> Iterator[Path]:
    """The working folder of one seed's study: ``keep/seed-<seed>`` (emptied first, and
    kept afterwards) or a temporary folder removed when done."""
    if keep is not None:
        base = Path(keep) / f"seed-{seed}"
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir(parents=True)
        yield base
        return
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        yield Path(tmp)


def run_logged(cmd: list[str], log: Path, name: str = "benchmark") -> float:
    """Run ``cmd`` with this checkout on PYTHONPATH, appending its output to ``log``;
    exit with a message naming the log if it fails. Returns the seconds it took."""
    began = time.perf_counter()
    with open(log, "a") as fh:
        fh.write("\n$ " + " ".join(cmd) + "\n")
        fh.flush()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH"))
                                            if p)
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        raise SystemExit(f"{name}: `{' '.join(cmd[:5])} ...` exited {code}; see {log}")
    return time.perf_counter() - began


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


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a part and everything it started (it leads its own process group)."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
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


def template_on_grid(resolution: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The packaged template's T1w and brain mask on the model grid, and its affine."""
    import nibabel as nb
    from nilearn.image import resample_img

    from bgs_app.grid import model_grid
    from bgs_app.templates import get_template

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

    from bgs_app.bids.derivatives import model_grid_path

    t1, mask, affine = template_on_grid(resolution)
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
        path = model_grid_path(folder, {"sub": f"{i + 1:04d}"}, "MNI152NLin2009aSym",
                               resolution)
        path.parent.mkdir(parents=True, exist_ok=True)
        img.to_filename(path)
        paths.append(path)
    return paths


def build_store(paths: list[Path], folder: Path, threads: int):
    from bgs_app.model.store import StoreItem, build_store

    items = [StoreItem(f"sub-{i + 1:04d}", None, p) for i, p in enumerate(paths)]
    return build_store(items, folder, nprocs=threads, progress=False)


def machine_label(described: dict[str, Any]) -> str:
    """One line naming a machine (also for records written before :func:`machine`)."""
    cpu = described.get("cpu_model") or described.get("cpu") or "unknown CPU"
    cores = described.get("cores_usable") or described.get("cores_logical") or \
        described.get("cores")
    gpu = described.get("gpu")
    return f"{cpu} ({cores} cores" + (f", {gpu}" if gpu else "") + ")"
