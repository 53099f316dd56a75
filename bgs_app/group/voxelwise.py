"""The voxelwise genotype test (``voxelwise.tsv`` and ``voxelwise/`` maps): at every brain
voxel of the held-out participants' model-grid images, image ~ dosage + covariates, with
permutation family-wise error control (nilearn's ``permuted_ols``), per SNP: the
classical mass-univariate analysis beside the CNN's maps."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pandas as pd

from bgs_app.config import RunContext
from bgs_app.group.inputs import GroupInputs
from bgs_app.group.stage import stage

LOGGER = logging.getLogger("bgs_app")

#: Beyond this many SNPs the test is not run (each costs a permutation test over the
#: brain); the voxel-ridge baseline still is.
MAX_VOXELWISE_SNPS = 64

COLUMNS = {
    "snp": "SNP",
    "n": "Held-out participants in the test (sessions averaged)",
    "voxels": "Brain voxels tested (block-averaged grid; inside the brain of at least 90 % "
              "of the participants)",
    "max_abs_t": "Largest absolute t of the dosage over the voxels",
    "threshold_t": {"Description": "The absolute t the maximum over the brain exceeds with "
                                   "probability 0.05 under permutation: voxels above it "
                                   "are significant at 5 % family-wise error"},
    "p_fwe_min": "Smallest family-wise corrected p over the voxels (max-t permutation)",
    "significant_voxels": "Voxels with family-wise corrected p < 0.05",
}


def held_out_participants(split: pd.Series) -> list[str]:
    """The participants the CNN scores out of sample (test, or every fold)."""
    values = split.astype(str)
    held = values.str.startswith("fold-") | (values == "test")
    return split.index[held].tolist()


def voxelwise_maps(context: RunContext, inputs: GroupInputs, store, images: pd.DataFrame,
                   dosages: pd.DataFrame, split: pd.Series,
                   tested: pd.DataFrame | None = None, kind: str = "t1w"
                   ) -> pd.DataFrame | None:
    """Run the test for every SNP (with ``--voxelwise-test``, up to
    :data:`MAX_VOXELWISE_SNPS` SNPs; skipped when current); write the table and maps.

    Parameters
    ----------
    context : RunContext
    inputs : GroupInputs
    store : bgs_app.model.store.TensorStore
        Rows in the order of ``images``: the log-Jacobian maps when the participant level
        wrote them (tensor-based morphometry), else the T1w images.
    images : pandas.DataFrame
    dosages : pandas.DataFrame
        Participants x SNPs after QC.
    split : pandas.Series
        The CNN's split: the test uses its held-out participants.
    tested : pandas.DataFrame, optional
        The tested SNPs with ``chrom`` and ``pos`` (left out of computed genetic PCs).
    kind : {"t1w", "logjacobian"}
        What ``store`` holds (recorded in the sidecar).

    Returns
    -------
    pandas.DataFrame or None
        The rows of ``voxelwise.tsv``.
    """
    from bgs_app.group.inputs import covariate_frame, image_sessions, plan_covariates
    from bgs_app.group.voxel_baseline import participant_volumes
    from bgs_app.stats import load_phenotypes
    from bgs_app.stats.associations import design_matrix
    from bgs_app.stats.voxel_baseline import brain_voxels
    from bgs_app.stats.voxelwise import ALPHA, N_PERMUTATIONS, voxelwise_test
    from bgs_app.utils.tables import write_table

    config, out = context.config, context.group_dir
    table_path, maps = out / "voxelwise.tsv", out / "voxelwise"
    if not config.voxelwise_test or dosages.shape[1] > MAX_VOXELWISE_SNPS:
        if config.voxelwise_test:
            LOGGER.info("Voxelwise genotype test: %d SNPs are more than %d; not run",
                        dosages.shape[1], MAX_VOXELWISE_SNPS)
        for path in (table_path, table_path.with_suffix(".json")):
            path.unlink(missing_ok=True)
        shutil.rmtree(maps, ignore_errors=True)
        return None
    held = [p for p in held_out_participants(split) if p in set(images["participant_id"])]
    plan = plan_covariates(config, inputs, log=False)
    extra = covariate_frame(context, plan, inputs, held, tested)
    _, covs = load_phenotypes(config.bids_dir, [], plan.table + plan.pc_columns,
                              nonlinear_age=config.nonlinear_age, extra_covariates=extra,
                              session=config.phenotype_session,
                              image_sessions=image_sessions(inputs))
    design = design_matrix(covs, pd.Index(held))
    done = stage(context, "voxelwise", [kind, store.index["sha256"].tolist(), held,
                                        dosages.reindex(held).to_numpy().tolist(),
                                        design.round(8).to_numpy().tolist(),
                                        config.seed, N_PERMUTATIONS], [table_path, maps])
    if done.current():
        LOGGER.info("Voxelwise genotype test is current; skipped")
        return pd.read_csv(table_path, sep="\t", na_values="n/a")
    spacing = float(np.abs(np.asarray(store.grid["affine"])[:3, :3]).max())
    volumes = participant_volumes(store, images, held)
    voxels, mask, factor = brain_voxels(volumes, spacing)
    del volumes
    affine = _block_affine(np.asarray(store.grid["affine"], float), factor)
    LOGGER.info("Voxelwise genotype test (%s): %d held-out participants, %d voxels, %d "
                "permutations per SNP", kind, len(held), voxels.shape[1], N_PERMUTATIONS)
    rows = []
    maps.mkdir(parents=True, exist_ok=True)
    for snp in dosages.columns:
        res = voxelwise_test(voxels, dosages.reindex(held)[snp].to_numpy(float), design,
                             seed=config.seed, n_jobs=config.nprocs)
        _write_map(res["t"], mask, affine, maps / f"snp-{snp}_stat-t_statmap.nii.gz")
        _write_map(-np.log10(np.clip(res["p_fwe"], 1e-300, 1)), mask, affine,
                   maps / f"snp-{snp}_stat-logpfwe_statmap.nii.gz")
        t = res["t"]
        rows.append({"snp": snp, "n": res["n"], "voxels": res["tested"],
                     "max_abs_t": float(np.nanmax(np.abs(t))) if np.isfinite(t).any()
                     else np.nan, "threshold_t": res["threshold"],
                     "p_fwe_min": res["p_fwe_min"],
                     "significant_voxels": res["significant"]})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    write_table(table, table_path, COLUMNS, {
        "Method": "nilearn permuted_ols: image ~ dosage + covariates at every voxel, "
                  "Freedman-Lane permutations, two-sided max-t family-wise correction",
        "Input": ("log-Jacobian maps of the nonlinear registration (tensor-based "
                  "morphometry)" if kind == "logjacobian" else
                  "model-grid T1w intensities (no log-Jacobian maps were found)"),
        "Permutations": N_PERMUTATIONS, "Alpha": ALPHA,
        "Covariates": list(design.columns), "VoxelSizeMM": spacing * factor,
        "Participants": "held out by the CNN's split (test set, or every fold)",
        "Maps": "voxelwise/snp-<snp>_stat-t_statmap.nii.gz (t of the dosage) and "
                "_stat-logpfwe_statmap.nii.gz (-log10 family-wise corrected p)"})
    done.done()
    n_sig = int((table["significant_voxels"] > 0).sum())
    LOGGER.info("Voxelwise genotype test: %d of %d SNP(s) have voxels significant at 5 %% "
                "family-wise error", n_sig, len(table))
    return table


def _block_affine(affine: np.ndarray, factor: int) -> np.ndarray:
    """The affine of a grid block-averaged ``factor``^3 (block centres)."""
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] * factor
    out[:3, 3] = affine[:3, 3] + affine[:3, :3] @ np.full(3, (factor - 1) / 2.0)
    return out


def _write_map(values: np.ndarray, mask: np.ndarray, affine: np.ndarray, path) -> None:
    import nibabel as nb

    from bgs_app.utils.atomic import save_nifti

    data = np.zeros(mask.shape, np.float32)
    data[mask] = np.nan_to_num(values, nan=0.0)
    img = nb.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    save_nifti(img, path)
