"""benchmarks/recovery.py runs from a checkout and records what it measured."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # about 2 min: two tiny studies through the group level


def test_recovery_script_smoke(tmp_path):
    results, md, fig = tmp_path / "r.json", tmp_path / "t.md", tmp_path / "p.png"
    cmd = [sys.executable, str(ROOT / "benchmarks/recovery.py"), "--n", "48",
           "--resolution", "4", "--pipeline", "oracle", "--epochs", "2", "--cv-folds", "2",
           "--null-studies", "1", "--results", str(results), "--markdown", str(md),
           "--figure", str(fig)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    printed = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["null"] for r in printed] == [False, True]
    study = printed[0]
    assert len(study["snps"]) == 12 and sum(s["causal"] for s in study["snps"]) == 4
    # Families as associations.tsv corrects them (the CNN ones only hold gated scores, and
    # two epochs on 48 people may gate none); claims as the report makes them.
    families = set(study["associations"])
    assert "genotype" in families
    assert all(f in {"genetic", "score", "genotype"} or f.startswith(("idp-", "voxel-"))
               for f in families)
    assert set(study["claims"]) == {"genetic", "anatomical"}
    assert study["planted"] and all(
        0.0 <= s["saliency_auc"] <= 1.0 for s in study["snps"] if s["saliency_auc"] is not None)
    found = study["associations"]["genotype"]
    assert sorted(found["planted_found"] + found["planted_missed"]) == study["planted"]
    assert json.loads(results.read_text()) == printed
    text = md.read_text()
    assert "| SNP | truth | CNN AUC" in text and "Null studies" in text
    assert fig.stat().st_size > 1000
