"""The group report: ``OUT_DIR/group/report.html`` (self-contained, figures inline)."""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import pandas as pd

from bgs_app import __version__
from bgs_app.bids.derivatives import (
    group_map_glob,
    group_regions_name,
    parse_name,
    sidecar_path,
)
from bgs_app.config import Config
from bgs_app.stats.claims import MIN_FIRST_STAGE_F
from bgs_app.stats.qc import OUTLIER_Z
from bgs_app.utils.atomic import write_text

LOGGER = logging.getLogger("bgs_app")


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, sep="\t", na_values="n/a") if path.is_file() else None


def _html(frame: pd.DataFrame | None, digits: int = 3) -> str:
    if frame is None or frame.empty:
        return "<p>none</p>"
    return frame.to_html(index=False, na_rep="n/a", float_format=lambda v: f"{v:.{digits}g}",
                         border=0)


def _models(group_dir: Path) -> list[tuple[str, Path]]:
    root = group_dir / "model"
    if (root / "model.json").is_file():
        return [("model", root)]
    return [(p.name, p) for p in sorted(root.glob("fold-*")) if (p / "model.json").is_file()]


def write_group_report(config: Config, template, group_dir: Path) -> Path:
    """Write the group report from the tables and maps under ``group_dir``.

    Parameters
    ----------
    config : Config
    template : bgs_app.templates.Template
        The run's template (maps are drawn over its T1w).
    group_dir : pathlib.Path

    Returns
    -------
    pathlib.Path
    """
    from jinja2 import Environment, PackageLoader, select_autoescape

    from bgs_app.reports.boilerplate import group_boilerplate
    from bgs_app.reports.model_figures import saliency_figure, training_curves
    from bgs_app.reports.stats_figures import forest_plot, pvalue_heatmap

    group_dir = Path(group_dir)
    summary = {}
    split = _read(group_dir / "split.tsv")
    if split is not None:
        summary["Split"] = ", ".join(f"{k}: {v}" for k, v in
                                     split["split"].value_counts().sort_index().items())
    subjects = group_dir / "subjects.json"
    if subjects.is_file():
        summary.update({f"Genotypes: {k.replace('_', ' ')}": v for k, v in
                        json.loads(subjects.read_text()).get("Summary", {}).items()})
    scores = _read(group_dir / "scores.tsv")
    if scores is not None:
        summary["Scored images"] = int(len(scores.drop_duplicates(
            [c for c in ("participant_id", "session_id") if c in scores.columns])))
    qc = _read(group_dir / "genotype_qc.tsv")
    image_qc = None
    images = _read(group_dir / "qc.tsv")
    if images is not None and len(images):
        flagged = images[images["outlier"].astype(str).str.lower() == "true"]
        cols = [c for c in ("participant_id", "session_id", "brain_ml", "etiv_ml",
                            "template_similarity", "intensity_outliers", "reason")
                if c in images]
        image_qc = {"images": len(images), "flagged": len(flagged),
                    "threshold": OUTLIER_Z,
                    "table": _html(flagged[cols].head(30)) if len(flagged) else ""}
    curves = []
    for name, folder in _models(group_dir):
        log = _read(folder / "training_log.tsv")
        if log is not None and len(log):
            curves.append({"name": name, "figure": training_curves(log, name)})
    perf = _read(group_dir / "performance.tsv")
    perf_wide = None
    if perf is not None and len(perf):
        perf_wide = perf.pivot_table(index="snp", columns="model",
                                     values=["auc", "r_dosage"]).round(3)
        perf_wide.columns = [f"{m} {v}" for v, m in perf_wide.columns]
        perf_wide = perf_wide.reset_index()
    assoc = _read(group_dir / "associations.tsv")
    claims_html, pair_claims = _claims(assoc)
    validated_snps = _validated(assoc, perf)
    saliency = []
    maps = group_dir / "saliency"
    for path in sorted(maps.glob(group_map_glob("saliency"))):
        if "genotype" in parse_name(path.name)[0]:
            continue
        snp = json.loads(sidecar_path(path).read_text())
        regions = _read(maps / group_regions_name(snp["SNP"], "saliency"))
        entry = {"snp": snp["SNP"], "method": snp.get("Method"), "n": snp.get("Subjects"),
                 "figure": saliency_figure(path, template.t1w, f"{snp['SNP']}"),
                 "regions": _html(regions.head(5) if regions is not None else None),
                 "validated": validated_snps is None or snp["SNP"] in validated_snps,
                 "performance": _performance_line(perf, snp["SNP"]),
                 "claims": ", ".join(f"{m}: {c}" for m, c in pair_claims.get(snp["SNP"], []))
                 or "none tested"}
        corr = path.with_name(path.name.replace("_desc-saliency_", "_desc-genotypecorr_"))
        if corr.is_file():
            meta = json.loads(sidecar_path(corr).read_text())
            corr_regions = _read(maps / group_regions_name(snp["SNP"], "genotypecorr"))
            entry.update({
                "corr_figure": saliency_figure(corr, template.t1w,
                                               f"{snp['SNP']}: genotype correlation"),
                "corr_n": meta.get("Subjects"), "corr_null": meta.get("NullLevel"),
                "corr_regions": _html(corr_regions.head(5) if corr_regions is not None
                                      else None)})
        saliency.append(entry)
    saliency.sort(key=lambda e: not e["validated"])  # the validated maps first
    from bgs_app.stats.gate import in_family

    forest = heat = None
    hits = None
    if assoc is not None and assoc["p"].notna().any():
        forest = forest_plot(assoc)
        heat = pvalue_heatmap(assoc)
        cols = ["source", "snp", "measure", "test", "family", "n", "beta", "se", "p",
                "p_bonferroni", "q_fdr", "validated", "claim"]
        cols = [c for c in cols if c in assoc]
        hits = assoc[in_family(assoc)].sort_values("p")[cols].head(30)
    families = ("none" if assoc is None or "family" not in assoc else ", ".join(
        f"{f} {n}" for f, n in assoc.loc[in_family(assoc), "family"].value_counts()
        .sort_index().items()))
    env = Environment(loader=PackageLoader("bgs_app", "data/templates"),
                      autoescape=select_autoescape(["html"]))
    from bgs_app.utils.markdown import markdown_to_html

    html = env.get_template("group.html").render(
        version=__version__, template=template.name, date=dt.datetime.now(dt.UTC).strftime(
            "%Y-%m-%d %H:%M UTC"),
        mode="apply a released model" if config.model else "train",
        summary=summary, qc=_html(qc), image_qc=image_qc, curves=curves,
        performance=_html(perf_wide),
        saliency=saliency, forest=forest, heatmap=heat, associations=_html(hits),
        n_tests=0 if assoc is None else int(in_family(assoc).sum()),
        n_significant=0 if assoc is None else int((assoc["p_bonferroni"] < 0.05).sum()),
        families=families, claims=claims_html, min_f=MIN_FIRST_STAGE_F,
        n_genetic=sum(c == "genetic" for v in pair_claims.values() for _, c in v),
        n_anatomical=sum(c == "anatomical" for v in pair_claims.values() for _, c in v),
        boilerplate=markdown_to_html(group_boilerplate(config, template.name, group_dir)))
    return write_text(group_dir / "report.html", html)



def _claims(assoc: pd.DataFrame | None) -> tuple[str | None, dict[str, list]]:
    """The claims table (every CNN score x measure, genetic and anatomical first) and,
    per SNP, its measures' claims."""
    if assoc is None or "claim" not in assoc or not (assoc["source"] == "cnn").any():
        return None, {}
    cnn = assoc[assoc["source"] == "cnn"]
    rows, by_snp = [], {}
    for (snp, measure), pair in cnn.groupby(["snp", "measure"], sort=False):
        tests = {t: r.iloc[0] for t, r in pair.groupby("test")}
        claim = str(pair["claim"].iloc[0])
        by_snp.setdefault(snp, []).append((measure, claim))
        row = {"snp": snp, "measure": measure, "claim": claim}
        if "score" in tests:
            row.update({"score beta (SD)": tests["score"]["beta"],
                        "score p (Bonf.)": tests["score"]["p_bonferroni"]})
        if "first_stage" in tests:
            row["first-stage F"] = tests["first_stage"]["f_stat"]
        if "reduced_form" in tests:
            row.update({"per-allele effect": tests["reduced_form"]["beta"],
                        "genetic p (Bonf.)": tests["reduced_form"]["p_bonferroni"]})
        if "instrumented" in tests:
            iv = tests["instrumented"]
            row.update({"instrumented": iv["beta"],
                        "Anderson-Rubin 95 %": _ar_interval(iv)})
        rows.append(row)
    frame = pd.DataFrame(rows)
    order = {"genetic": 0, "anatomical": 1, "none": 2}
    frame = frame.sort_values(["claim", "snp"], key=lambda c: c.map(order) if c.name ==
                              "claim" else c).reset_index(drop=True)
    return _html(frame), by_snp


def _ar_interval(row) -> str:
    low, high, kind = row.get("ci_low"), row.get("ci_high"), str(row.get("ci_kind"))
    if kind == "rays":
        return f"(-inf, {low:.3g}] or [{high:.3g}, inf)"
    if pd.isna(low) or pd.isna(high):
        return "n/a"
    return f"[{low:.3g}, {high:.3g}]"


def _validated(assoc: pd.DataFrame | None, perf: pd.DataFrame | None) -> set[str] | None:
    """The CNN SNPs whose scores passed the gate (None: unknown, treat all as passed)."""
    if assoc is not None and "validated" in assoc and (assoc["source"] == "cnn").any():
        cnn = assoc[(assoc["source"] == "cnn") & (assoc.get("test", "score") == "score")]
        return set(cnn.loc[cnn["validated"].astype(str).str.lower() == "true", "snp"])
    return None


def _performance_line(perf: pd.DataFrame | None, snp: str) -> str:
    if perf is None or not len(perf):
        return "not measured"
    rows = perf[(perf["model"] == "cnn") & (perf["snp"] == snp)]
    if not len(rows):
        return "not measured"
    r = rows.iloc[0]
    return (f"r = {r['r_dosage']:.3g} (p = {r['p_r_dosage']:.2g}, n = {int(r['n_test'])})"
            if pd.notna(r.get("r_dosage")) else "n/a")
