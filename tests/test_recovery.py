"""What the model stages recover from a simulated study with strong planted effects.

200 simulated participants (4 mm scans; 12 SNPs, 4 causal with 80 % volume change per
allele; strong cognition effects) go through the group level's CLI on model-grid images
made from the true transforms (``truth_model_grid``). Asserted:

* genotype prediction (issue 6): the causal SNPs' held-out score-dosage correlation is
  clearly above chance, the null SNPs' is not;
* saliency (issue 7): the causal SNPs' group maps point at their planted effects
  (voxelwise ROC AUC against the truth map) clearly better than the null SNPs' maps point
  at any planted effect; their genotype-correlation maps find the planted effects, and
  the null SNPs' maps none;
* associations (issues 8 and 19): planted SNP -> measure links are claimed genetic
  through the CNN scores of the 38 held-out participants (reduced form significant in
  the genetic family, first-stage F >= 10), and nothing the truth does not imply is.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from bgs_app.cli.run import main
from bgs_app.simulate.oracle import truth_model_grid

N = 200
pytestmark = pytest.mark.slow  # about 5 min; `make test-slow` (CI runs it)


@pytest.fixture(scope="session")
def recovery(tmp_path_factory):
    from bgs_app.simulate import SimulationParams, simulate_study

    base = tmp_path_factory.mktemp("recovery")
    study, out = base / "study", base / "out"
    truth = simulate_study(study, SimulationParams(n_subjects=N, seed=1, resolution=4.0,
                                                   effect_size=0.8, warp_mm=1.5,
                                                   cognition_effect=1.0),
                           nprocs=2, progress=False)
    truth_model_grid(study, out, 4.0)
    snps = base / "snps.txt"
    snps.write_text("\n".join(s["snp"] for s in truth["snps"]) + "\n")
    code = main([str(study), str(out), "group", "--genotypes", str(study / "genetics/study"),
                 "--snps-file", str(snps), "--resolution", "4", "--skip-bids-validation",
                 "--nprocs", "2", "--epochs", "40", "--patience", "40", "--batch-size", "8",
                 "--learning-rate", "2e-3", "--channels", "8", "16", "32", "32", "32", "16",
                 "--saliency-method", "gradient", "--covariates", "age", "sex", "site",
                 "-w", str(base / "work")])
    return {"code": code, "truth": truth, "study": study, "group": out / "group"}


def _causal(truth):
    return [s["snp"] for s in truth["snps"] if s["causal"]]


def _null(truth):
    return [s["snp"] for s in truth["snps"] if not s["causal"] and s["qc_failure"] is None]


def test_cnn_predicts_causal_genotypes_not_null_ones(recovery):
    assert recovery["code"] == 0
    perf = pd.read_csv(recovery["group"] / "performance.tsv", sep="\t").query("model == 'cnn'")
    perf = perf.set_index("snp")
    causal, null = _causal(recovery["truth"]), _null(recovery["truth"])
    found = perf.loc[causal].query("r_dosage > 0 and p_r_dosage < 0.01")
    assert len(found) >= 3, perf.loc[causal]
    # Nulls: nothing past a Bonferroni threshold over the null SNPs.
    assert (perf.loc[null, "p_r_dosage"] > 0.05 / len(null)).all(), perf.loc[null]


def test_group_saliency_finds_the_planted_effects(recovery):
    from bgs_app.simulate.evaluate import saliency_aucs

    truth = recovery["truth"]
    aucs = saliency_aucs(recovery["study"], recovery["group"] / "saliency")
    assert set(_causal(truth) + _null(truth)) <= set(aucs)
    causal = _causal(truth)
    print(json.dumps(aucs))
    # Gradient maps at 4 mm from 38 held-out subjects, the CNN on the log-Jacobian maps
    # (--cnn-input auto; the oracle writes the true ones). Measured: causal 0.82-0.99,
    # and the null SNPs 0.82-0.95 as well: the heads share one trunk, and once it has
    # learnt the planted anatomy every score's saliency points there (on intensities,
    # which it learnt less, nulls were 0.45-0.56). A saliency map says where a score
    # looks, not that its SNP acts there: the genotype-correlation map (next test) is
    # the one that separates causal from null SNPs.
    assert max(aucs[s] for s in causal) >= 0.9, aucs
    assert min(aucs[s] for s in causal) >= 0.7, aucs


def test_genotype_correlation_maps_find_the_planted_effects(recovery):
    from bgs_app.simulate.evaluate import saliency_aucs

    truth = recovery["truth"]
    aucs = saliency_aucs(recovery["study"], recovery["group"] / "saliency", "genotypecorr")
    assert set(_causal(truth) + _null(truth)) <= set(aucs)
    causal, null = _causal(truth), _null(truth)
    print("genotypecorr", json.dumps(aucs))
    # |corr(attribution, dosage)| over 38 held-out subjects, gradient at 4 mm. Measured on
    # this split with two sets of library versions (the training trajectory changes with
    # them as with a seed): causal 0.94, 0.84, 0.81, 0.80 and 0.97, 0.84, 0.81, 0.75;
    # nulls 0.43-0.58 and 0.47-0.64. With 38 subjects a null voxel's |r| is about 0.13,
    # so one map can move by 0.05-0.1 between such runs: the assertions are on the group
    # of causal SNPs against the nulls, with that room.
    causal_aucs, null_aucs = [aucs[s] for s in causal], [aucs[s] for s in null]
    assert np.mean(causal_aucs) >= 0.75, aucs
    assert min(causal_aucs) >= 0.65, aucs
    assert max(null_aucs) < 0.7, aucs
    assert np.mean(causal_aucs) >= np.mean(null_aucs) + 0.15, aucs


def test_planted_links_are_claimed_genetic_and_nothing_else_is(recovery):
    from bgs_app.simulate.evaluate import truth_links

    assoc = pd.read_csv(recovery["group"] / "associations.tsv", sep="\t", na_values="n/a",
                        keep_default_na=False)
    truth = recovery["truth"]
    links = truth_links(recovery["study"])
    planted = {k for k, v in links.items() if v == "planted"}
    cnn = assoc[assoc["source"] == "cnn"]
    pairs = cnn.drop_duplicates(["snp", "measure"])
    genetic = {(s, m) for s, m, c in zip(pairs["snp"], pairs["measure"], pairs["claim"],
                                         strict=True) if c == "genetic"}
    assert genetic & planted, pairs[["snp", "measure", "claim"]]
    # Every genetic claim is a link of the truth: planted, or through a causal SNP whose
    # effect region overlaps the driving one.
    assert genetic <= set(links), (genetic - set(links), links)
    # The score gate: null SNPs' scores do not predict their genotypes, so they enter no
    # family and claim nothing (without the gate their scores carried the anatomy behind
    # reaction time through the shared trunk).
    null_cnn = cnn[cnn["snp"].isin(_null(truth))]
    assert not (null_cnn["validated"].astype(str) == "true").any(), null_cnn
    assert (null_cnn["claim"] == "none").all()
    genotype = assoc[(assoc["source"] == "genotype") & assoc["snp"].isin(_null(truth))]
    assert (genotype["p_bonferroni"] >= 0.05).all(), genotype
