"""What a simulated study's truth implies: its SNP -> measure links, and how well group
saliency maps point at its effect maps.

A measure is driven by the realised volume change in a causal SNP's effect region
(``truth.json``: ``measures[...]["drivers"]``). That region's volume can also move with
*other* causal SNPs whose effect blobs overlap it: then those SNPs change the driving
anatomy too, and their association with the measure is as real as the planted one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd


def truth_links(study: Path, relative: float = 0.2) -> dict[tuple[str, str], str]:
    """SNP -> measure links of a simulated study, ``"planted"`` or ``"overlap"``.

    Parameters
    ----------
    study : pathlib.Path
        A study written by ``bgs-simulate``.
    relative : float
        A causal SNP is linked to a measure through overlap when its per-allele effect on
        the driving region's realised volume (least squares over the study's
        participants, every causal SNP's dosage together) is at least this fraction of
        the driving SNP's own effect.

    Returns
    -------
    dict
        ``{(snp, measure): "planted" | "overlap"}``.
    """
    from bed_reader import open_bed

    truth = json.loads((Path(study) / "derivatives/simulation-truth/truth.json").read_text())
    prefix = Path(study) / "genetics" / "study"
    with open_bed(str(prefix) + ".bed") as bed:
        dosage = pd.DataFrame(bed.read(dtype="float64"), columns=list(bed.sid),
                              index=[str(i).removeprefix("sub-") for i in bed.iid])
    return links_of(truth, dosage, relative)


def links_of(truth: dict, dosage: pd.DataFrame, relative: float = 0.2
             ) -> dict[tuple[str, str], str]:
    """:func:`truth_links` from a study's truth and its dosages (participants x SNPs,
    index the labels without ``sub-``)."""
    links = {(d["snp"], m): "planted" for m, spec in truth["measures"].items()
             for d in spec["drivers"] if d.get("beta_on_anatomy", 1) != 0}
    causal = [s["snp"] for s in truth["snps"] if s["causal"]]
    realised = truth.get("realised_anatomy", {}).get("values")
    if not causal or not realised:
        return links
    anatomy = pd.DataFrame(realised).set_index("label")
    x = dosage.reindex(index=anatomy.index, columns=causal)
    x = x.fillna(x.mean())
    design = np.column_stack([np.ones(len(x)), x.to_numpy()])
    for measure, spec in truth["measures"].items():
        for driver in spec["drivers"]:
            region = driver["snp"]
            if driver.get("beta_on_anatomy", 1) == 0:
                continue
            if region not in anatomy:
                continue
            coef = np.linalg.lstsq(design, anatomy[region].to_numpy(float), rcond=None)[0][1:]
            own = abs(coef[causal.index(region)])
            for snp, c in zip(causal, coef, strict=True):
                if snp != region and own > 0 and abs(c) >= relative * own:
                    links.setdefault((snp, measure), "overlap")
    return links


def saliency_aucs(study: Path, saliency_dir: Path, kind: str = "saliency"
                  ) -> dict[str, float]:
    """Voxelwise ROC AUC of each group saliency map against the truth.

    A causal SNP's map is scored against its own effect map; any other SNP's map against
    the union (maximum absolute value) of the causal maps, so that about 0.5 means "points
    nowhere in particular". A study without causal SNPs gives an empty dict.

    Parameters
    ----------
    study : pathlib.Path
        A study written by ``bgs-simulate``.
    saliency_dir : pathlib.Path
        ``group/saliency`` of a group-level run (``snp-<rsid>_desc-<kind>_map.nii.gz``).
    kind : {"saliency", "genotypecorr"}
        The mean |attribution| maps, or the genotype-correlation maps.

    Returns
    -------
    dict
        ``{snp: auc}``.
    """
    import nibabel as nb
    from nilearn.image import resample_to_img

    from bgs_app.bids.derivatives import group_map_glob, snp_label

    truth_dir = Path(study) / "derivatives/simulation-truth"
    truth = json.loads((truth_dir / "truth.json").read_text())
    causal = [s["snp"] for s in truth["snps"] if s["causal"]]
    out: dict[str, float] = {}
    maps: dict[str, np.ndarray] = {}
    for snp in [s["snp"] for s in truth["snps"]]:
        found = sorted(Path(saliency_dir).glob(group_map_glob(kind, snp_label(snp))))
        if not causal or not found:
            continue
        path = found[0]
        sal = nb.load(path)
        if not maps:
            maps = {c: resample_to_img(nb.load(truth_dir / f"effect_snp-{c}_map.nii.gz"), sal,
                                       interpolation="continuous", force_resample=True,
                                       copy_header=True).get_fdata() for c in causal}
        own = maps[snp] if snp in maps else np.max(np.abs(np.stack(list(maps.values()))),
                                                   axis=0)
        data = sal.get_fdata()
        out[snp] = map_auc(data, own, data > 0)
    return out


def map_auc(saliency: np.ndarray, truth: np.ndarray, brain: np.ndarray) -> float:
    """Voxelwise ROC AUC of a saliency map against a truth effect map, inside the brain.

    Truth voxels are those with an absolute effect above a fifth of its maximum.
    """
    from sklearn.metrics import roc_auc_score

    inside = brain > 0
    effect = np.abs(truth[inside])
    positive = effect > 0.2 * effect.max() if effect.max() > 0 else np.zeros_like(effect, bool)
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, saliency[inside]))
