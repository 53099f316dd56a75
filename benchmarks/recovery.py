"""Recovery study: does bgs_app find the planted genotype -> brain -> cognition links, and
nothing else?

Usage: python benchmarks/recovery.py [--n 400] [--effect-size 80] [--cognition-effect 1.0]
       [--resolution 3] [--pipeline full|oracle] [--null-studies K] [--null-n N]
       [--genotypes simulated|1000g] [--genetic-pcs 4] [--seed 1] [--epochs 40]
       [--cv-folds 0] [--nprocs 2] [--device auto|cpu|cuda]
       [--saliency-method gradient|integrated_gradients|smoothgrad] [--keep DIR]
       [--results FILE] [--markdown FILE] [--figure FILE]

For each study: ``bgs-simulate`` (12 SNPs that pass QC, 4 of them causal: one
atlas-aligned, three as distributed blobs; each causal SNP's anatomy drives a cognitive
measure or none), then the participant level (``--pipeline full``: ANTs registration,
segmentation, IDPs, model-grid images; ``--pipeline oracle``: model-grid images from the
simulation's true transforms, no IDPs, so no IDP baseline), then the group level (CNN on
one train/val/test split or ``--cv-folds`` cross-fitting; group saliency, by default
with plain gradients, which CPUs afford; IDP baseline; associations). Null studies
(``--null-studies``) have no causal SNP at all; the share of them with any
Bonferroni-significant row estimates the family-wise error rate.
``--genotypes 1000g`` uses the real 1000 Genomes genotypes in
``../shared/testdata/genotypes/`` (real allele frequencies and population structure;
genetic PCs as covariates).

Reported per SNP: CNN and IDP-baseline test AUC and score-dosage r, the ROC AUC against
the truth effect map (a null SNP's map against the union of the causal maps) of the
group saliency map and of the genotype-correlation map;
per source (cnn, idp-*, genotype): planted links found after Bonferroni, links found
through overlapping effect regions (a causal SNP that also moves a driving region's
volume, ``bgs_app.simulate.evaluate.truth_links``), null-SNP rows significant, and other
significant rows the truth does not imply. Prints one JSON object per invocation;
appends it to ``--results`` (default benchmarks/results/recovery.json) and rewrites the
Markdown tables (``--markdown``) and the power figure (``--figure``) from every result
recorded there.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine as describe_machine  # noqa: E402
from _common import machine_label  # noqa: E402
from _common import run_logged as _run_logged  # noqa: E402

# Run as modules of this checkout (also where no console scripts are installed).
BGS_APP = [sys.executable, "-m", "bgs_app"]
SIMULATE = [sys.executable, "-m", "bgs_app.simulate"]
SHARED_1000G = ROOT.parent / "shared/testdata/genotypes/1kg_phase1_thinned"


def causal_1000g(seed: int, k: int = 4) -> list[str]:
    """``k`` common, fully called 1000 Genomes SNPs (MAF 0.2-0.5), chosen by ``seed``."""
    from bed_reader import open_bed

    with open_bed(str(SHARED_1000G) + ".bed") as bed:
        geno = bed.read(dtype="float32")
        sid = np.asarray(bed.sid)
    freq = np.nanmean(geno, axis=0) / 2
    maf = np.minimum(freq, 1 - freq)
    ok = np.flatnonzero((maf >= 0.2) & ~np.isnan(geno).any(axis=0))
    return sorted(sid[np.random.default_rng(seed).choice(ok, size=k, replace=False)].tolist())


def run_logged(cmd: list[str], log: Path) -> float:
    """:func:`_common.run_logged`, naming this script."""
    return _run_logged(cmd, log, "recovery")


def simulate_command(study: Path, *, n: int, seed: int, resolution: float, effect: float,
                     cognition_effect: float = 1.0, warp_mm: float = 1.5, nprocs: int = 2
                     ) -> list[str]:
    """The ``bgs-simulate`` command of a recovery study (also used by
    ``saliency_variants.py`` to re-create one)."""
    return [*SIMULATE, str(study), "--n-subjects", str(n), "--seed", str(seed),
            "--resolution", str(resolution), "--effect-size", str(effect),
            "--cognition-effect", str(cognition_effect), "--warp-mm", str(warp_mm),
            "--nprocs", str(nprocs), "--quiet"]


def run_study(base: Path, args: argparse.Namespace, *, n: int, effect: float, seed: int,
              null: bool, confounded: bool = False) -> dict:
    """Simulate, process and evaluate one study; return its result record."""
    study, out, work, log = base / "study", base / "out", base / "work", base / "log.txt"
    times = {}
    resumed = args.resume and (study / "derivatives/simulation-truth/truth.json").is_file()
    sim = simulate_command(study, n=n, seed=seed, resolution=args.resolution, effect=effect,
                           cognition_effect=args.cognition_effect, warp_mm=args.warp_mm,
                           nprocs=args.nprocs)
    if null:
        sim += ["--n-causal", "0"]
    if confounded:  # SNPs change anatomy; a non-genetic anatomy, not they, drives cognition
        # (the later --cognition-effect wins)
        sim += ["--cognition-effect", "0", "--confound-strength", str(args.confound_strength)]
    if args.genotypes == "1000g":
        if not SHARED_1000G.with_suffix(".bed").is_file():
            raise SystemExit(f"recovery: {SHARED_1000G}.bed is absent")
        if null:
            raise SystemExit("recovery: null studies use simulated genotypes")
        sim += ["--genotypes-from", str(SHARED_1000G), "--causal-snps",
                *causal_1000g(seed)]
    times["simulate_s"] = None if resumed else run_logged(sim, log)
    truth = json.loads((study / "derivatives/simulation-truth/truth.json").read_text())
    snps = [s["snp"] for s in truth["snps"]]
    (base / "snps.txt").write_text("\n".join(snps) + "\n")
    res = f"{args.resolution:g}"
    if args.pipeline == "full":
        times["participant_s"] = run_logged(
            [*BGS_APP, str(study), str(out), "participant", "--nprocs",
             str(args.nprocs), "--omp-nthreads", "1", "--resolution", res, "--sloppy",
             "--registration", args.registration, "-w", str(work), "--skip-bids-validation"],
            log)
    else:
        from bgs_app.simulate.oracle import truth_model_grid

        began = time.perf_counter()
        truth_model_grid(study, out, args.resolution, nprocs=args.nprocs)
        times["participant_s"] = time.perf_counter() - began
    group = [*BGS_APP, str(study), str(out), "group",
             "--genotypes", str(study / "genetics/study"), "--snps-file",
             str(base / "snps.txt"), "--resolution", res, "--epochs", str(args.epochs),
             "--patience", str(args.epochs), "--batch-size", "8", "--learning-rate", "2e-3",
             "--channels", *map(str, args.channels), "--saliency-method", args.saliency_method,
             "--covariates", "age", "sex", "site", "--nprocs", str(args.nprocs), "-w",
             str(work), "--skip-bids-validation", "--seed", str(seed), "--device", args.device]
    if args.cv_folds:
        group += ["--cv-folds", str(args.cv_folds)]
    if args.genotypes == "1000g" and args.genetic_pcs:
        # The study holds every 1000 Genomes SNP of its people: genome-wide, so the PCs
        # come from it, without the tested SNPs and 500 kb around them.
        group += ["--genetic-pcs", str(args.genetic_pcs), "--pca-genotypes",
                  str(study / "genetics/study")]
    times["group_s"] = run_logged(group, log)
    result = evaluate(study, out / "group", truth)
    result.update({"n": n, "effect_size_percent": effect, "seed": seed, "null": null,
                   "confounded": confounded,
                   "resumed": bool(resumed),
                   "times": {k: None if v is None else round(v, 1)
                             for k, v in times.items()}})
    return result


def evaluate(study: Path, group: Path, truth: dict) -> dict:
    """Per-SNP prediction and saliency, and the association table against the truth."""
    from bgs_app.simulate.evaluate import saliency_aucs, truth_links
    from bgs_app.stats.gate import in_family

    causal = {s["snp"] for s in truth["snps"] if s["causal"]}
    atlas = {s["snp"] for s in truth["snps"] if s["causal"]
             and s.get("pattern", {}).get("type") == "atlas"}
    null = {s["snp"] for s in truth["snps"] if not s["causal"] and s["qc_failure"] is None}
    links = truth_links(study)
    planted = {k for k, v in links.items() if v == "planted"}
    overlap = {k for k, v in links.items() if v == "overlap"}
    perf = pd.read_csv(group / "performance.tsv", sep="\t", na_values="n/a")
    sal = {k: round(v, 4) for k, v in saliency_aucs(study, group / "saliency").items()}
    corr = {k: round(v, 4) for k, v in saliency_aucs(study, group / "saliency",
                                                     "genotypecorr").items()}
    snps = []
    for snp in sorted(causal | null):
        row = {"snp": snp, "causal": snp in causal, "atlas": snp in atlas,
               "drives": sorted(m for s, m in planted if s == snp),
               "overlaps": sorted(m for s, m in overlap if s == snp),
               "saliency_auc": sal.get(snp), "genotypecorr_auc": corr.get(snp)}
        for model, rows in perf[perf["snp"] == snp].groupby("model"):
            r = rows.iloc[0]
            row[model] = {k: (None if pd.isna(r[k]) else round(float(r[k]), 4))
                          for k in ("n_test", "auc", "r_dosage", "p_r_dosage")}
        snps.append(row)
    assoc = pd.read_csv(group / "associations.tsv", sep="\t", na_values="n/a")
    member = in_family(assoc)
    assoc["in_family"] = member
    # One entry per corrected family (genetic, score, idp-<model>, genotype); older tables
    # without families: one per source.
    key = assoc["family"].fillna("").astype(str) if "family" in assoc else assoc["source"]
    families = {}
    for family, rows in assoc[member].groupby(key[member]):
        hits = rows[rows["p_bonferroni"] < 0.05]
        pairs = set(zip(hits["snp"], hits["measure"], strict=True))
        families[family] = {
            "tests_in_family": int(len(rows)),
            "validated_scores": sorted(rows["snp"].unique()),
            "planted_found": sorted(f"{s}->{m}" for s, m in pairs & planted),
            "planted_missed": sorted(f"{s}->{m}" for s, m in planted - pairs),
            "overlap_found": sorted(f"{s}->{m}" for s, m in pairs & overlap),
            "null_snp_hits": sorted(f"{s}->{m}" for s, m in pairs if s in null),
            "other_unlinked_hits": sorted(f"{s}->{m}" for s, m in pairs - planted - overlap
                                          if s not in null),
            "best_planted_p_bonferroni": (None if not planted else _min_p(rows, planted)),
        }
    claims = {}
    if "claim" in assoc:
        pairs = assoc[assoc["source"] == "cnn"].drop_duplicates(["snp", "measure"])
        for claim in ("genetic", "anatomical"):
            chosen = pairs[pairs["claim"] == claim]
            claims[claim] = {
                kind: sorted(f"{s}->{m}" for s, m in zip(chosen["snp"], chosen["measure"],
                                                        strict=True)
                             if links.get((s, m), "none") == kind)
                for kind in ("planted", "overlap", "none")}
    return {"snps": snps, "associations": families, "claims": claims,
            "planted": sorted(f"{s}->{m}" for s, m in planted),
            "overlap": sorted(f"{s}->{m}" for s, m in overlap),
            "n_tests": int(len(assoc)), "n_family": int(member.sum())}


def _min_p(rows: pd.DataFrame, planted: set) -> float | None:
    keep = [(s, m) in planted for s, m in zip(rows["snp"], rows["measure"], strict=True)]
    p = rows.loc[keep, "p_bonferroni"].dropna()
    return None if p.empty else float(p.min())


# --- tables and figure ---------------------------------------------------------------------
def _fmt(v, digits=2):
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def markdown(results: list[dict]) -> str:
    """Markdown tables of every recorded study (most recent first)."""
    lines = ["<!-- written by benchmarks/recovery.py; do not edit by hand -->", ""]
    # Records of a study the simulator got wrong stay in the results, marked, and out of
    # the tables.
    results = [r for r in results if not r.get("superseded")]
    real = [r for r in results if not r["null"] and not r.get("confounded")]
    nulls = [r for r in results if r["null"]]
    confounded = [r for r in results if r.get("confounded")]
    for r in reversed(real):
        lines += [f"### N = {r['n']}, effect {r['effect_size_percent']:g} % per allele, "
                  f"{r['config']['resolution']:g} mm, {r['config']['pipeline']} pipeline, "
                  f"{r['config']['genotypes']} genotypes",
                  "",
                  f"{r['date']} on {machine_label(r['machine'])}; "
                  + ", ".join(f"{k[:-2]} {v:.0f} s" for k, v in r["times"].items()
                              if v is not None)
                  + (" (resumed run: times of the resumed part)" if r.get("resumed") else "")
                  + f". Command: `{r['command']}`",
                  "",
                  "| SNP | truth | CNN AUC | CNN r | IDP-logreg AUC | IDP-logreg r | "
                  "IDP-gbm AUC | IDP-gbm r | saliency AUC | genotype-corr. AUC |",
                  "|---|---|---|---|---|---|---|---|---|---|"]
        for s in r["snps"]:
            kind = ("atlas-aligned" if s["atlas"] else "causal") if s["causal"] else "null"
            if s["drives"]:
                kind += " → " + ", ".join(s["drives"])
            if s["overlaps"]:
                kind += " (overlap → " + ", ".join(s["overlaps"]) + ")"
            cells = [s["snp"], kind]
            for model in ("cnn", "idp-logreg", "idp-gbm"):
                m = s.get(model) or {}
                cells += [_fmt(m.get("auc")), _fmt(m.get("r_dosage"))]
            cells += [_fmt(s.get("saliency_auc")), _fmt(s.get("genotypecorr_auc"))]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", "| family | SNPs tested | planted links found (Bonferroni) | "
                  "missed | found through overlap | null-SNP rows significant | "
                  "other unlinked rows significant |", "|---|---|---|---|---|---|---|"]
        for source, a in sorted(r["associations"].items()):
            tested = ("all" if source == "genotype"
                      else ", ".join(a["validated_scores"]) or "none")  # source: a family
            cells = [a["planted_found"], a["planted_missed"], a["overlap_found"],
                     a["null_snp_hits"], a["other_unlinked_hits"]]
            lines.append(f"| {source} | {tested} | "
                         + " | ".join(", ".join(c) or "none" for c in cells) + " |")
        if r.get("claims"):
            lines += ["", "| CNN claim | planted links | through overlap | not linked |",
                      "|---|---|---|---|"]
            for claim, kinds in r["claims"].items():
                lines.append(f"| {claim} | " + " | ".join(", ".join(kinds[k]) or "none"
                                                       for k in ("planted", "overlap",
                                                                 "none")) + " |")
        lines.append("")
    if nulls:
        lines += ["### Null studies (no causal SNP): family-wise error", "",
                  "| family (older records: source) | studies with any Bonferroni-significant "
                  "row | FWER (95 % CI) |",
                  "|---|---|---|"]
        for source, (k, total) in sorted(fwer(nulls).items()):
            lo, hi = _clopper_pearson(k, total)
            lines.append(f"| {source} | {k} of {total} | {k / total:.2f} "
                         f"({lo:.2f}–{hi:.2f}) |")
        sizes = sorted({(r["n"], r["config"]["resolution"], r["config"]["pipeline"])
                        for r in nulls})
        lines += ["", "Null studies: " + "; ".join(f"N = {n}, {res:g} mm, {p}"
                                                   for n, res, p in sizes) + ".", ""]
    if confounded:
        lines += ["### Confounded null studies: the SNPs change anatomy, a non-genetic "
                  "anatomical component drives cognition, no SNP does", "",
                  "| reading | studies with a false finding | rate (95 % CI) |", "|---|---|---|"]
        total = len(confounded)
        for label, hit in (
                ("CNN `genetic` claim", lambda r: bool(r.get("claims", {}).get(
                    "genetic", {}).get("none"))),
                ("CNN score test (score family) read as a genetic link",
                 lambda r: bool(r["associations"].get("score", {}).get("null_snp_hits")
                                or r["associations"].get("score", {}).get(
                                    "other_unlinked_hits"))),
                ("genotype rows", lambda r: bool(r["associations"].get("genotype", {}).get(
                    "other_unlinked_hits") or r["associations"].get("genotype", {}).get(
                        "null_snp_hits")))):
            k = sum(hit(r) for r in confounded)
            lo, hi = _clopper_pearson(k, total)
            lines.append(f"| {label} | {k} of {total} | {k / total:.2f} ({lo:.2f}–{hi:.2f}) |")
        sizes = sorted({(r["n"], r["config"]["resolution"], r["config"]["pipeline"],
                         r["config"].get("confound_strength")) for r in confounded})
        lines += ["", "Confounded studies: " + "; ".join(
            f"N = {n}, {res:g} mm, {p}, confound strength {c}" for n, res, p, c in sizes)
            + ".", ""]
    return "\n".join(lines) + "\n"


def fwer(nulls: list[dict]) -> dict[str, tuple[int, int]]:
    """Per source: (null studies with any significant row, null studies)."""
    out: dict[str, list[int]] = {}
    for r in nulls:
        for source, a in r["associations"].items():
            hit = bool(a["null_snp_hits"] or a["other_unlinked_hits"])
            k, total = out.get(source, [0, 0])
            out[source] = [k + hit, total + 1]
    return {s: (k, t) for s, (k, t) in out.items()}


def _clopper_pearson(k: int, n: int) -> tuple[float, float]:
    from scipy import stats

    lo = 0.0 if k == 0 else float(stats.beta.ppf(0.025, k, n - k + 1))
    hi = 1.0 if k == n else float(stats.beta.ppf(0.975, k + 1, n - k))
    return lo, hi


def power_figure(results: list[dict], path: Path) -> Path | None:
    """Share of planted links found through CNN scores (and genotypes, IDP) vs N, one line
    per effect size, model-grid resolution and genotype source (studies of the same kind
    averaged)."""
    real = [r for r in results if not r["null"]]
    if not real:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2), sharey=True)
    for ax, source in zip(axes, ("cnn", "idp-gbm", "genotype"), strict=True):
        rows = []
        for r in real:
            # The CNN's links: its genetic claims' family (older records: its source).
            a = r["associations"].get("genetic" if source == "cnn" else source) or \
                r["associations"].get(source)
            if a is None or not r["planted"]:
                continue
            kind = (f"{r['effect_size_percent']:g} %, {r['config']['resolution']:g} mm"
                    + (", 1000G" if r["config"].get("genotypes") == "1000g" else ""))
            rows.append((kind, r["n"], len(a["planted_found"]) / len(r["planted"])))
        frame = pd.DataFrame(rows, columns=["kind", "n", "power"])
        for kind, part in frame.groupby("kind"):
            part = part.groupby("n")["power"].mean()
            ax.plot(part.index, part.values, marker="o", label=kind)
        ax.set_title(source)
        ax.set_xlabel("participants (N)")
        ax.set_ylim(-0.05, 1.05)
    axes[0].set_ylabel("planted links found")
    axes[-1].legend(title="effect per allele, grid", fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    from bgs_app.utils.atomic import write_text

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[400])
    parser.add_argument("--effect-size", type=float, nargs="+", default=[80.0],
                        help="volume change per allele in percent (one study per value)")
    parser.add_argument("--cognition-effect", type=float, default=1.0)
    parser.add_argument("--warp-mm", type=float, default=1.5)
    parser.add_argument("--resolution", type=float, default=3.0)
    parser.add_argument("--pipeline", choices=("full", "oracle"), default="full")
    parser.add_argument("--registration", choices=("affine", "syn"), default="affine")
    parser.add_argument("--null-studies", type=int, default=0)
    parser.add_argument("--null-n", type=int, default=None,
                        help="participants per null study (default: the first --n)")
    parser.add_argument("--no-planted", action="store_true",
                        help="run only the null (and confounded) studies")
    parser.add_argument("--confounded-studies", type=int, default=0,
                        help="confounded null studies: the causal SNPs change anatomy, a "
                             "non-genetic anatomical component drives cognition, no SNP does")
    parser.add_argument("--confound-strength", type=float, default=0.5)
    parser.add_argument("--genotypes", choices=("simulated", "1000g"), default="simulated")
    parser.add_argument("--genetic-pcs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--cv-folds", type=int, default=0)
    parser.add_argument("--channels", type=int, nargs=6, default=[8, 16, 32, 32, 32, 16])
    parser.add_argument("--nprocs", type=int, default=2)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="device for the CNN (group level)")
    parser.add_argument("--saliency-method", default="gradient",
                        choices=("gradient", "integrated_gradients", "smoothgrad"))
    parser.add_argument("--keep", type=Path, default=None,
                        help="keep the studies and outputs under this folder")
    parser.add_argument("--resume", action="store_true",
                        help="with --keep: reuse a study already simulated there and "
                             "resume its participant and group levels (times then cover "
                             "the resumed part only)")
    parser.add_argument("--results", type=Path,
                        default=ROOT / "benchmarks/results/recovery.json")
    parser.add_argument("--markdown", type=Path,
                        default=ROOT / "docs/_generated/recovery_tables.md")
    parser.add_argument("--figure", type=Path, default=ROOT / "docs/_static/recovery_power.png")
    args = parser.parse_args(argv)
    if args.genotypes == "1000g" and args.null_studies:
        parser.error("null studies use simulated genotypes (drop --null-studies with 1000g)")

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
              if k not in ("keep", "results", "markdown", "figure")}
    command = "python benchmarks/recovery.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    machine = describe_machine()
    plan = [] if args.no_planted else [(n, e, args.seed, False, False) for n in args.n
                                       for e in args.effect_size]
    plan += [(args.null_n or args.n[0], 0.0, args.seed + 1000 + k, True, False)
             for k in range(args.null_studies)]
    plan += [(args.null_n or args.n[0], args.effect_size[0], args.seed + 2000 + k, False, True)
             for k in range(args.confounded_studies)]
    root = args.keep or Path(tempfile.mkdtemp(prefix="bgs-recovery-"))
    new = []
    try:
        for n, effect, seed, null, confounded in plan:
            base = root / (f"null-n{n}-s{seed}" if null else f"confounded-n{n}-s{seed}"
                           if confounded else f"n{n}-e{effect:g}-s{seed}")
            if base.exists() and not args.resume:
                shutil.rmtree(base)
            base.mkdir(parents=True, exist_ok=True)
            began = time.perf_counter()
            result = run_study(base, args, n=n, effect=effect, seed=seed, null=null,
                               confounded=confounded)
            result.update({"date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                           "machine": machine, "config": config, "command": command,
                           "wall_s": round(time.perf_counter() - began, 1)})
            new.append(result)
            print(json.dumps(result), flush=True)
            previous = (json.loads(args.results.read_text()) if args.results.is_file()
                        else [])
            # Atomic: a run killed while writing must not lose the earlier records.
            write_text(args.results, json.dumps(previous + [result], indent=1) + "\n")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    everything = json.loads(args.results.read_text()) if args.results.is_file() else new
    write_text(args.markdown, markdown(everything))
    power_figure(everything, args.figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
