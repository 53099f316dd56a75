"""Methods boilerplate of the group level (Markdown), like fMRIPrep's."""

from __future__ import annotations

import json
from pathlib import Path

from bgs_app.config import GROUP_SMOOTHING_MM, Config
from bgs_app.reports.references import bibtex, cited, reference_list
from bgs_app.stats.claims import MIN_FIRST_STAGE_F
from bgs_app.utils.atomic import write_text


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("torch", "captum", "statsmodels", "scikit-learn", "bed-reader", "nibabel",
                 "nilearn"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


def group_boilerplate(config: Config, template: str, group_dir: Path | None = None) -> str:
    """The methods paragraph for the chosen options (and, when present, the results' N)."""
    from bgs_app import __version__

    method = config.saliency_method or "integrated_gradients"
    saliency = {"integrated_gradients": f"Integrated Gradients [@ig] ({config.ig_steps} "
                                        "steps from a zero image)",
                "gradient": "input gradients", "smoothgrad": "SmoothGrad [@smoothgrad]"}[method]
    channels = "-".join(str(c) for c in config.channels)
    cnn_input = _cnn_input(config, group_dir)
    # Whether the run found log-Jacobian maps (the voxel baselines and the voxelwise test
    # then use them): what its tables record.
    logjac = cnn_input == "logjacobian"
    if group_dir is not None and (Path(group_dir) / "voxel_scores.json").is_file():
        voxels = json.loads((Path(group_dir) / "voxel_scores.json").read_text()).get(
            "Voxels")
        logjac = logjac or (isinstance(voxels, dict) and "voxel-ridge-logjac" in voxels)
    if group_dir is not None and (Path(group_dir) / "voxelwise.json").is_file():
        found = json.loads((Path(group_dir) / "voxelwise.json").read_text()).get("Input")
        logjac = logjac or str(found).startswith("log-Jacobian")
    text = [f"# Methods (group level)\n\nThe group analysis used bgs_app {__version__} "
            f"({_versions()})."]
    if config.model is None:
        split = (f"{config.cv_folds}-fold cross-fitting (each participant scored by the "
                 "model trained without its fold)" if config.cv_folds > 1 else
                 f"a held-out test set of {config.test_fraction:.0%} of participants, drawn "
                 f"within each site, and a validation set of {config.val_fraction:.0%} for "
                 "early stopping")
        text.append(
            f"Genotypes were read from PLINK binary files with bed-reader and coded as counts "
            f"of the A1 allele; SNPs were kept with call rate at least {1 - config.geno:.2f}, "
            f"minor-allele frequency at least {config.maf} and Hardy-Weinberg exact [@hwe] "
            f"p at least {config.hwe:g}, and people with call rate at least "
            f"{1 - config.mind:.2f}, as PLINK does [@plink]. Participants were split into "
            f"{split} (seed {config.seed}). A multi-task SFCN [@sfcn] (3D convolutional "
            f"blocks of widths {channels}{_architecture(config)}, one three-class genotype "
            f"head per SNP, masked "
            f"cross-entropy over called genotypes) was trained in PyTorch [@pytorch] on the "
            + (f"{config.resolution:g} mm model-grid images in {template} space (brain-"
               f"extracted, affinely aligned, divided by their mean brain intensity)"
               if cnn_input == "t1w" else
               f"{config.resolution:g} mm log-Jacobian maps in {template} space (the log "
               f"determinant of the Jacobian of the nonlinear registration's deformation, "
               f"on the model grid, zero outside the brain: tensor-based morphometry)"
               if cnn_input == "logjacobian" else
               f"{config.resolution:g} mm log-Jacobian maps of the nonlinear registration "
               f"in {template} space when every image had one, else the affinely aligned "
               f"model-grid images")
            + f" with AdamW (peak "
            f"learning rate {config.learning_rate:g}, warm-up and cosine decay, batch "
            f"{config.batch_size}, at most {config.epochs} epochs, early stopping after "
            f"{config.patience} epochs without a lower validation loss) and augmentation by "
            f"{_shifts(config)}"
            + (" and intensity scaling and gamma" if cnn_input == "t1w" else
               " (and intensity scaling and gamma for T1w images)" if cnn_input == "auto"
               else "")
            + ", without left-right flips. "
            + (f"Each model is an ensemble of {config.ensemble} such networks, trained "
               f"with seeds {config.seed} to {config.seed + config.ensemble - 1}, whose "
               "genotype probabilities are averaged. " if config.ensemble > 1 else "")
            + "A participant's brain-genotype score for a SNP is the expected allele count "
            "predicted from the image, p1 + 2 p2.")
        text.append(
            "An imaging-derived-phenotype (IDP) baseline was fitted on the same split: grey-"
            "matter volumes of the Harvard-Oxford regions [@ho] and tissue volumes, divided "
            "by the estimated total intracranial volume, predicted each genotype through a "
            "multinomial L2 logistic regression and gradient boosting (scikit-learn "
            "[@sklearn]; hyper-parameters by inner cross-validation)."
            + ("" if config.no_voxel_baseline else
               " A voxel-ridge baseline, fitted on the same split, predicted each genotype "
               "from every brain voxel of the model-grid images"
               + (", and in a second model of the log-Jacobian maps," if logjac else "")
               + " (block-averaged to about "
               "4 mm, standardised) through a multinomial L2 logistic regression, its "
               "penalty chosen by inner cross-validation (fitted exactly on the training "
               "images' principal-component scores).")
            + ("" if not config.voxelwise_test else
               " A mass-univariate voxelwise test regressed the held-out participants' "
               + ("log-Jacobian maps (tensor-based morphometry)" if logjac else "images")
               + " (block-averaged to about 4 mm) on each dosage and the covariates at "
               "every brain voxel, with family-wise error control by 1000 Freedman-Lane "
               "permutations (max-t; nilearn's permuted_ols [@nilearn])."))
    else:
        text.append(f"Brain-genotype scores were computed with the released model "
                    f"{config.model.name} on {config.resolution:g} mm model-grid images in "
                    f"{template} space.")
    if not config.no_saliency:
        text.append(f"Saliency maps were computed with {saliency} through captum "
                    "[@captum], with each score as the target; absolute attributions were "
                    "divided by their mean in the brain and averaged over held-out "
                    "participants, and summarised by Harvard-Oxford region [@ho]."
                    + (" Genotype-correlation maps give, at each voxel, the absolute "
                       "Pearson correlation between the held-out participants' "
                       "attributions and their dosage of the SNP (smoothed with a "
                       f"Gaussian of {GROUP_SMOOTHING_MM:g} mm sigma within the brain), "
                       "with a 5 % family-wise threshold from their maximum over the brain "
                       "under up to 199 permutations of the dosages."
                       if config.genotypes is not None else ""))
    covs = (", ".join(config.covariates) if config.covariates else
            "age, sex and site (those of them recorded)")
    extra = []
    if config.nonlinear_age:
        extra.append("age squared and age by sex")
    if config.genetic_pcs:
        extra.append(f"{config.genetic_pcs} genetic principal components"
                     + (" computed from a genome-wide file without the tested SNPs and 500 "
                        "kb around them" if config.pca_genotypes else ""))
    fdr = ("Benjamini-Yekutieli [@by]" if config.fdr_method == "by" else
           "Benjamini-Hochberg [@bh]")
    gate = ("Only scores that predicted their own genotype in held-out participants "
            "(positive score-dosage correlation, Bonferroni-corrected over each model's SNPs "
            "at 0.05) were tested: the prediction heads share one network, so a score that "
            "does not predict its genotype carries other anatomy rather than its SNP's. "
            + ("With cross-fitting, the gate's p-value combined the exact per-fold "
               "correlation tests (one-sided, by the Cauchy combination [@acat]), because "
               "the folds' models share training participants. "
               if config.cv_folds > 1 else "")
            if config.score_gate == "validated" else "Every score was tested. ")
    text.append(
        "Held-out scores were tested for association with each cognitive measure by "
        f"ordinary least squares with {covs}"
        + (f" (plus {' and '.join(extra)})" if extra else "")
        + " as covariates, with the measure and the score standardised within the complete "
          "cases of each test (equal to statsmodels' OLS [@statsmodels]). " + gate
        + "A score is mostly anatomy that has nothing to do with its SNP, so a significant "
          "score test was read only as a brain-cognition association. Whether a link was "
          "genetic was asked of the genotype, per participant (sessions averaged): the "
          "first stage (score on dosage, its F statistic and the score's genetic share), "
          "the reduced form (measure on dosage, the per-allele effect in the measure's "
          "units), the instrumented estimate (the dosage as the instrument of the score: "
          "the Wald ratio, equal to two-stage least squares as linearmodels "
          "[@linearmodels] computes it, with the Anderson-Rubin confidence set [@ar], "
          "valid with a weak instrument, and the "
          "Wu-Hausman test), and the remainder (the score's association given its "
          "dosage). A link was claimed genetic when its reduced form was significant in "
          "the genetic family (the reduced forms of the tested scores' SNPs) and the first "
          f"stage had F of at least {MIN_FIRST_STAGE_F:g} [@staiger], and anatomical when "
          "the score test was significant in its family but the link was not genetic. "
          "p-values were corrected by Bonferroni within each family (genetic, score, each "
          "baseline, and the genotype rows of every SNP), and " + fdr + " q-values were "
          "computed within each family. The IDP-baseline scores were tested as the CNN's "
          "score tests.")
    if group_dir is not None and (group_dir / "associations.json").is_file():
        meta = json.loads((group_dir / "associations.json").read_text())
        if "Participants" in meta:
            text.append(f"Associations used {meta['Participants']} participants.")
    body = "\n\n".join(text)
    return body + "\n\n" + reference_list(cited(body))


def write_group_boilerplate(config: Config, template: str, group_dir: Path) -> Path:
    """Write ``group/CITATION.md`` and its references as ``group/CITATION.bib``."""
    text = group_boilerplate(config, template, group_dir)
    write_text(Path(group_dir) / "CITATION.bib", bibtex(cited(text)))
    return write_text(Path(group_dir) / "CITATION.md", text)


def _cnn_input(config, group_dir) -> str:
    """What the CNN read: ``--cnn-input``, or with ``auto`` what the trained bundle
    records (``auto`` when there is no bundle yet, e.g. ``--boilerplate-only``)."""
    if config.cnn_input != "auto":
        return config.cnn_input
    if group_dir is not None:
        for path in sorted(Path(group_dir).glob("model/**/model.json")):
            try:
                grid = json.loads(path.read_text()).get("grid") or {}
            except (OSError, ValueError):
                continue
            return str(grid.get("Input", "t1w"))
    return "auto"


def _architecture(config) -> str:
    """The network options that differ from SFCN's, as a clause of the methods text."""
    parts = []
    if config.poolings == "auto":
        parts.append("max-pooling in as many blocks as keep a last feature map of at "
                     "least 5 voxels per axis")
    elif config.poolings != "all":
        parts.append(f"max-pooling in the first {config.poolings} blocks")
    parts.append("a linear read-out of the whole last feature map" if config.readout ==
                 "flatten" else "global average pooling")
    if config.coord_channels:
        parts.append("three input channels of voxel coordinates")
    parts.append("GroupNorm (8 groups)" if config.norm == "group" else "batch normalisation")
    return "; " + ", ".join(parts)


def _shifts(config) -> str:
    """The augmentation's shifts, as the methods text says them."""
    if config.max_shift is None:
        return "shifts of up to 3 mm (in whole voxels)"
    if config.max_shift == 0:
        return "no shifts"
    return f"shifts of up to {config.max_shift} voxel(s)"
