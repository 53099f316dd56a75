"""A 500-SNP panel against a 12-SNP one: wall time and peak memory of the group level's
training, saliency and associations, and saliency's cost per subject.

Usage: python benchmarks/many_snps.py [--n 200] [--snps 500] [--epochs 20]
       [--repeats 5] [--selection informative|mean] [--out FILE] [--keep DIR]

One simulated study (4 mm, ``--snps`` SNPs of which 4 causal with 80 % volume change;
model-grid images from the true transforms) goes through the group level twice: with
every SNP, and with 12 of them (the 4 causal and 8 null). Each run is timed in two
parts, as separate processes whose peak resident memory is read from the kernel
(``wait4``): training with scoring and associations (``--no-saliency``), then a rerun
that only adds the group saliency (gradient; the trained model is current). The stage
times come from the run's log. Saliency per subject: on one held-out image, the median
of ``--repeats`` timings of :func:`bgs_app.model.saliency.attribute_heads` over every
head of each bundle (the chain rule for the 500, captum per head for the 12). Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import code_version, emit, machine  # noqa: E402

BGS_APP = [sys.executable, "-m", "bgs_app"]
SIMULATE = [sys.executable, "-m", "bgs_app.simulate"]
CHANNELS = ["8", "16", "32", "32", "32", "16"]


def _measured(cmd: list[str], log: Path) -> dict:
    """Run ``cmd``; its wall time and peak RSS (MiB)."""
    began = time.perf_counter()
    with open(log, "a") as handle:
        proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"many_snps: {' '.join(cmd[:4])} ... failed; see {log}")
    return {"wall_s": round(time.perf_counter() - began, 1),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def _stage_times(log: Path) -> dict:
    """Seconds between the log's stage messages (training, scoring, associations)."""
    stamps = []
    for line in log.read_text().splitlines():
        found = re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+) \| \w+\s*\| (.*)", line)
        if found:
            stamps.append((datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S,%f"),
                           found.group(2)))
    marks = {"training": r"^model: epoch 1/|^fold-0: epoch 1/|Training",
             "scoring": r"held-out|Scores", "associations": r"^Associations: \d+ rows"}
    found = {}
    for name, pattern in marks.items():
        for when, message in stamps:
            if re.search(pattern, message):
                found[name] = when
                break
    out = {}
    if "training" in found and "scoring" in found:
        out["training_s"] = round((found["scoring"] - found["training"]).total_seconds(), 1)
    return out


def _group(study: Path, derivatives: Path, snps_file: Path, work: Path, args,
           saliency: bool) -> list[str]:
    cmd = [*BGS_APP, str(study), str(derivatives), "group", "--genotypes",
           str(study / "genetics/study"), "--snps-file", str(snps_file), "--resolution", "4",
           "--epochs", str(args.epochs), "--patience", str(args.epochs), "--batch-size", "8",
           "--learning-rate", "2e-3", "--channels", *CHANNELS, "--covariates", "age",
           "sex", "site", "--nprocs", "2", "-w", str(work), "--skip-bids-validation",
           "--saliency-method", "gradient", "--checkpoint-selection", args.selection]
    return cmd if saliency else [*cmd, "--no-saliency"]


def _saliency_per_subject(bundle: Path, image: Path, repeats: int) -> dict:
    import torch

    from bgs_app.model.bundle import load_bundle
    from bgs_app.model.saliency import attribute_heads, heads_per_pass
    from bgs_app.model.scores import load_volume

    torch.set_num_threads(2)
    model, meta = load_bundle(bundle)
    volume = load_volume(image, meta["grid"])
    heads = list(range(len(meta["snps"])))
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        attribute_heads(model, volume, heads, method="gradient")
        times.append(time.perf_counter() - began)
    return {"heads": len(heads), "seconds_median": round(statistics.median(times), 3),
            "seconds_all": [round(t, 3) for t in times],
            "chain_rule": len(heads) > model.channels[-1],
            "heads_per_pass": heads_per_pass(model, len(heads), volume.size)}


def run(base: Path, args) -> dict:
    from bgs_app.simulate.oracle import truth_model_grid

    study, log = base / "study", base / "simulate.log"
    simulate = _measured([*SIMULATE, str(study), "--n-subjects", str(args.n), "--seed", "3",
                          "--n-snps", str(args.snps), "--resolution", "4", "--effect-size",
                          "80", "--warp-mm", "1.5", "--nprocs", "2", "--quiet"], log)
    truth = json.loads((study / "derivatives/simulation-truth/truth.json").read_text())
    everything = [s["snp"] for s in truth["snps"]]
    causal = [s["snp"] for s in truth["snps"] if s["causal"]]
    null = [s["snp"] for s in truth["snps"] if not s["causal"] and not s["qc_failure"]]
    panels = {"all": everything, "twelve": causal + null[:12 - len(causal)]}
    images = base / "images"
    truth_model_grid(study, images, 4.0, nprocs=2)
    result = {"simulate": simulate, "runs": {}}
    for name, snps in panels.items():
        snps_file = base / f"snps_{name}.txt"
        snps_file.write_text("\n".join(snps) + "\n")
        out = base / f"out_{name}"
        shutil.copytree(images, out, dirs_exist_ok=True)
        log = base / f"group_{name}.log"
        train = _measured(_group(study, out, snps_file, base / f"work_{name}", args, False),
                          log)
        logs = sorted((out / "logs").glob("bgs_app-*.log"))
        stages = _stage_times(logs[-1]) if logs else {}
        saliency = _measured(_group(study, out, snps_file, base / f"work_{name}", args,
                                    True), log)
        perf = out / "group/performance.tsv"
        import pandas as pd

        table = pd.read_csv(perf, sep="\t").query("model == 'cnn'").set_index("snp")
        held = pd.read_csv(out / "group/scores.tsv", sep="\t").query("split == 'test'")
        image = next(out.glob(f"{held['participant_id'].iloc[0]}/anat/"
                              "*_desc-model_T1w.nii.gz"))
        result["runs"][name] = {
            "snps_requested": len(snps), "snps_trained": int(len(table)),
            "train_score_associate": train, "stages_from_log": stages,
            "saliency_rerun": saliency,
            "saliency_per_subject": _saliency_per_subject(out / "group/model", image,
                                                          args.repeats),
            "causal_r_dosage": {s: round(float(table.loc[s, "r_dosage"]), 3)
                                for s in causal if s in table.index},
            "null_r_dosage_mean": round(float(table.drop(
                index=[s for s in causal if s in table.index])["r_dosage"].mean()), 4),
            "gated": int(((table["r_dosage"] > 0)
                          & (table["p_r_dosage"] * len(table) < 0.05)).sum())}
    a = result["runs"]["all"]["saliency_per_subject"]["seconds_median"]
    b = result["runs"]["twelve"]["saliency_per_subject"]["seconds_median"]
    result["saliency_per_subject_ratio_all_vs_12"] = round(a / b, 2) if b else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--snps", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--selection", choices=("informative", "mean"), default="informative",
                        help="--checkpoint-selection of both runs")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args(argv)
    began = time.perf_counter()
    if args.keep:
        shutil.rmtree(args.keep, ignore_errors=True)
        args.keep.mkdir(parents=True)
        result = run(args.keep, args)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(Path(tmp), args)
    emit({"benchmark": "many_snps", "machine": machine(), "code": code_version(),
          "design": {"n": args.n, "snps": args.snps, "causal": 4, "resolution_mm": 4,
                     "epochs": args.epochs, "channels": [int(c) for c in CHANNELS],
                     "saliency": "gradient", "checkpoint_selection": args.selection},
          **result, "seconds": round(time.perf_counter() - began, 1)}, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
