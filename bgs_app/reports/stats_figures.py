"""Figures of the association results: a forest plot and a -log10 p heatmap."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bgs_app.reports.figures import to_data_uri


def forest_plot(table: pd.DataFrame, max_rows: int = 40) -> str | None:
    """Standardised betas of the score tests with 95 % CIs, most significant first (PNG
    data URI; None when no test could be estimated)."""
    if "test" in table:
        table = table[table["test"] == "score"]
    if table.dropna(subset=["beta"]).empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table.dropna(subset=["beta"]).sort_values("p").head(max_rows).iloc[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.25 * len(rows) + 1.2))
    colours = rows["p_bonferroni"].lt(0.05).map({True: "#c0392b", False: "#34495e"})
    y = np.arange(len(rows))
    ax.errorbar(rows["beta"], y, xerr=[rows["beta"] - rows["ci_low"],
                                        rows["ci_high"] - rows["beta"]],
                fmt="none", ecolor="#999", lw=1)
    ax.scatter(rows["beta"], y, c=list(colours), zorder=3, s=18)
    ax.axvline(0, color="#666", lw=0.8)
    ax.set_yticks(y, [f"{s} {n} / {m}" for s, n, m in
                      zip(rows["source"], rows["snp"], rows["measure"], strict=True)],
                  fontsize=7)
    ax.set_xlabel("standardised beta (95 % CI); red: Bonferroni p < 0.05")
    fig.patch.set_facecolor("white")
    return to_data_uri(fig, facecolor="white")


def pvalue_heatmap(table: pd.DataFrame, n_tests: int | None = None) -> str | None:
    """-log10 p of every predictor x measure of the corrected families; cells significant
    after Bonferroni within their family outlined (the line shows the threshold of a
    family of all of them); None when no test could be estimated."""
    if table.dropna(subset=["p"]).empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bgs_app.stats.gate import in_family

    data = table.dropna(subset=["p"]).copy()
    if "family" in data:  # the families' rows, one line per source, SNP and family
        data = data[in_family(data)]
        if data.empty:
            return None
        family = pd.Series(True, index=data.index)
        data["row"] = (data["source"].astype(str) + " " + data["snp"].astype(str) + " ("
                       + data["family"].astype(str) + ")")
        significant = data["p_bonferroni"] < 0.05
    else:
        family = in_family(data)
        data["row"] = (data["source"].astype(str) + " " + data["snp"].astype(str)
                       + np.where(family, "", " (not validated)"))
        significant = family & (data["p"] * max(int(family.sum()), 1) < 0.05)
    grid = data.pivot_table(index="row", columns="measure", values="p", aggfunc="min")
    hit = data.assign(hit=significant).pivot_table(
        index="row", columns="measure", values="hit", aggfunc="max").reindex_like(
            grid).fillna(False)
    logp = -np.log10(grid)
    n_tests = n_tests or int(family.sum())
    line = -np.log10(0.05 / max(n_tests, 1))
    fig, ax = plt.subplots(figsize=(1.5 + 1.1 * grid.shape[1], 0.28 * grid.shape[0] + 1.5))
    im = ax.imshow(logp.to_numpy(), cmap="viridis", aspect="auto",
                   vmin=0, vmax=max(line * 1.5, float(np.nanmax(logp.to_numpy()))))
    for (i, j), value in np.ndenumerate(hit.to_numpy()):
        if value:
            ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=7)
    bar = fig.colorbar(im, ax=ax)
    bar.set_label("-log10 p")
    bar.ax.axhline(line, color="red", lw=2)
    ax.set_title(f"Bonferroni line: -log10(0.05/{n_tests}) = {line:.2f}", fontsize=8)
    return to_data_uri(fig, facecolor="white")
