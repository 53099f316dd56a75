"""The claims on score-level studies: a confounded score is never read as genetic, a
planted link is, and benchmarks/validity.py reports both."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bgs_app.simulate.scores import ScoreStudy, simulate_score_study
from bgs_app.stats.claims import association_table
from bgs_app.stats.gate import validated_scores
from bgs_app.stats.metrics import score_dosage_correlation

VALIDITY = Path(__file__).resolve().parents[1] / "benchmarks" / "validity.py"


def _claims(study: ScoreStudy) -> tuple[pd.DataFrame, pd.DataFrame]:
    data = simulate_score_study(study)
    scores, dosages = data["scores"], data["dosages"]
    performance = pd.DataFrame([
        {"model": "cnn", "snp": s, **score_dosage_correlation(dosages[s], scores[s])}
        for s in scores.columns])
    table = association_table(data["phenotypes"], data["covariates"], cnn=scores,
                              dosages=dosages, validated=validated_scores(performance))
    pairs = table[table["source"] == "cnn"].drop_duplicates(["snp", "measure"])
    return pairs.merge(data["truth"], on=["snp", "measure"]), table


def test_the_simulator_plants_what_its_truth_says():
    links = {(0, 0): 0.3}
    data = simulate_score_study(ScoreStudy(n=3000, confound=0.4, links=links, seed=3))
    truth = data["truth"]
    assert len(truth) == 12 * 3 and truth["genetic_link"].sum() == 1
    assert truth.loc[truth["genetic_link"], ["snp", "measure"]].values.tolist() == [
        ["rs0001", "measure1"]]
    d, s, y = data["dosages"], data["scores"], data["phenotypes"]
    assert set(data["covariates"].columns) == {"age", "sex", "site", "pc1", "pc2", "pc3",
                                               "pc4"}
    # brain SNPs (the first four) carry their genotype; the others do not
    r = [np.corrcoef(d.iloc[:, j], s.iloc[:, j])[0, 1] for j in range(12)]
    assert min(r[:4]) > 0.08 and max(abs(v) for v in r[4:]) < 0.08
    # the scores share their non-genetic anatomy, which drives every measure
    assert s.corr().to_numpy()[np.triu_indices(12, 1)].min() > 0.6
    assert min(np.corrcoef(s.iloc[:, 5], y[m])[0, 1] for m in y.columns) > 0.2
    # the planted SNP moves its measure per allele; another SNP does not
    slope = np.polyfit(d["rs0001"], y["measure1"], 1)[0]
    assert 0.2 < slope < 0.4
    assert abs(np.polyfit(d["rs0002"], y["measure1"], 1)[0]) < 0.1


def test_a_confounded_score_is_anatomical_and_never_genetic():
    """No SNP affects cognition, the scores' shared anatomy does: the score test finds it
    (a brain-cognition association), the claim must not call it genetic."""
    anatomical = genetic = 0
    for seed in range(10):
        pairs, table = _claims(ScoreStudy(n=2000, confound=0.4, seed=100 + seed))
        assert not pairs["genetic_link"].any()
        genetic += int((pairs["claim"] == "genetic").any())
        anatomical += int((pairs["claim"] == "anatomical").any())
        assert set(table.loc[table["family"] != "", "family"]) <= {"genetic", "score",
                                                                   "genotype"}
    assert anatomical == 10  # the score test is significant in (practically) every study
    assert genetic <= 2  # ~5 % family-wise error: 2 of 10 happens with p < 0.09


def test_planted_links_are_claimed_genetic():
    links = {(k, k): 0.2 for k in range(3)}
    found = 0
    for seed in range(5):
        pairs, _ = _claims(ScoreStudy(n=4000, confound=0.4, links=links, seed=200 + seed))
        linked = pairs[pairs["genetic_link"]]
        found += int((linked["claim"] == "genetic").sum())
        # a planted SNP's other measures are not claimed genetic unless by chance
        assert (pairs.loc[~pairs["genetic_link"], "claim"] == "genetic").sum() <= 1
    assert found >= 13  # of 15; the benchmark's power here is 0.994


@pytest.mark.parametrize("extra", [[], ["--scenarios", "global_null", "planted_0.1"]])
def test_validity_benchmark_prints_one_json_object_and_tables(tmp_path, extra):
    out, md = tmp_path / "validity.json", tmp_path / "tables.md"
    proc = subprocess.run([sys.executable, str(VALIDITY), "--quick", "--processes", "1",
                           "--out", str(out), "--markdown", str(md), *extra],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert json.loads(out.read_text()) == report
    scenarios = extra[1:] or ["global_null", "confounded_null", "planted_0.02",
                              "planted_0.05", "planted_0.1", "planted_0.2"]
    assert list(report["results"]) == scenarios
    for name, cells in report["results"].items():
        cell = cells["400"]
        assert cell["studies"] == 20
        low, high = cell["fwer_genetic_claim"]["ci95"]
        assert 0 <= low <= cell["fwer_genetic_claim"]["rate"] <= high <= 1
        assert ("power_per_planted_link" in cell) == name.startswith("planted")
    text = md.read_text()
    assert "family-wise error of the claim" in text and "| global_null |" in text
    again = tmp_path / "again.md"
    subprocess.run([sys.executable, str(VALIDITY), "--from", str(out), "--markdown",
                    str(again)], check=True, timeout=60, cwd=tmp_path)
    assert again.read_text() == text
