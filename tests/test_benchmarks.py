"""The benchmark driver (benchmarks/speed.py): one command, one JSON object."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SPEED = Path(__file__).resolve().parents[1] / "benchmarks" / "speed.py"


def _speed_module():
    spec = importlib.util.spec_from_file_location("bgs_speed_benchmark", SPEED)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SPEED), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600)


def test_quick_subset_prints_one_json_object(tmp_path):
    out = tmp_path / "speed.json"
    proc = _run(["--quick", "--only", "associations", "genotypes", "--out", str(out)],
                tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    assert {"date", "mode", "machine", "commands", "parts", "ratios", "scaling",
            "failed", "total_seconds"} <= set(report)
    assert report["mode"] == "quick" and report["failed"] == []
    assert {"cpu_model", "cores_logical", "ram_gb", "torch"} <= set(report["machine"])
    assert set(report["parts"]) == set(report["commands"]) == {"associations", "genotypes"}
    for name, part in report["parts"].items():
        assert part["status"] == "ok", part
        assert part["command"] == report["commands"][name]
        assert part["command"].startswith(f"{sys.executable} {SPEED.parent}/")
    assert report["parts"]["genotypes"]["result"]["read_snps"] == 5
    ratio = report["ratios"]["associations_vectorised_vs_statsmodels"]
    assert ratio["speedup_vs_peer"] > 0 and ratio["peer_seconds"] > 0
    assert not list(tmp_path.glob("bgs-*"))  # its temporary folder is gone


def test_dry_run_lists_every_part_and_runs_nothing(tmp_path):
    proc = _run(["--dry-run", "--threads", "3"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["parts"] == {} and report["mode"] == "full"
    assert {"participant", "participant_scaling", "simulate", "genotypes", "associations",
            "store", "training", "training_scaling", "scoring"} <= set(report["commands"])
    assert "--omp-nthreads 3" in report["commands"]["participant"]
    assert "store_speed.py" in report["commands"]["store"]


def test_unknown_part_is_refused(tmp_path):
    proc = _run(["--only", "nonsense"], tmp_path)
    assert proc.returncode == 2 and "invalid choice" in proc.stderr


def test_ratios_and_fits():
    speed = _speed_module()
    common = sys.modules["_common"]  # the benchmarks' shared helpers, imported by speed.py
    fit = common.linear_fit([2, 4, 8], [30.0, 50.0, 90.0])
    assert fit["slope_seconds_per_subject"] == pytest.approx(10.0)
    assert fit["intercept_seconds"] == pytest.approx(10.0) and fit["r2"] == 1.0
    assert common.linear_fit([2], [30.0]) is None
    assert common.machine_label({"cpu_model": "X", "cores_usable": 2}) == "X (2 cores)"
    assert common.machine_label({"cpu": "Y", "cores": 4, "gpu": "H100"}) == "Y (4 cores, H100)"
    ratios = speed.ratios({
        "store": {"store_seconds_per_volume": 0.001, "nibabel_seconds_per_volume": 0.02,
                  "grid": [80, 96, 80]},
        "participant": {"seconds_per_subject_median": 60.0,
                        "peer_antsRegistrationSyNQuick_whole_head_1mm_seconds": 120.0,
                        "step_seconds_median": {"register_syn": 20.0, "register_brain": 10.0,
                                                "n4": 6.0, "ds_idps": 0.0}}})
    assert ratios["store_vs_nibabel"]["speedup_vs_peer"] == pytest.approx(20.0)
    assert ratios["participant_vs_ants_registration"]["time_ratio_ours_over_peer"] == 0.5
    assert ratios["participant_registration_steps_vs_ants_registration"][
        "ours_seconds"] == 30.0
    assert set(ratios["participant_steps_over_ants_registration"]) == {
        "register_syn", "register_brain", "n4"}
    assert speed.last_json('log line\n{\n "a": 1\n}\n') == {"a": 1}
