"""The BIDS-App argument parser: the one place where command-line options live.

``bgs_app BIDS_DIR OUTPUT_DIR {participant,group} [options]``, as the BIDS-Apps
convention and fMRIPrep define it. Options may also come from a TOML or YAML
file (``--config-file``) whose keys are the long option names; the command line
wins over the file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bgs_app import __version__
from bgs_app.config import DEFAULTS, FDR_METHODS, LEVELS, RESOLUTIONS, SCORE_GATES, Config
from bgs_app.errors import UnknownLevelError, UsageError


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become :class:`UsageError` (exit 64)."""

    def error(self, message: str):  # noqa: D401 - argparse API
        raise UsageError(f"{message}\n{self.format_usage().strip()}")


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from err
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return number


def _positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from err
    if number <= 0:
        raise argparse.ArgumentTypeError(f"{value!r} must be positive")
    return number


_MEMORY_UNITS = {"k": 1e-6, "m": 1e-3, "g": 1.0, "t": 1e3}


def _memory_gb(value: str) -> float:
    """fMRIPrep's ``--mem``: a size in MB, or with a unit (``16G``, ``16000M``, ``0.5T``)."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(?:i?[bB])?\s*", value)
    if not match or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a memory size (MB, or with a unit: 16G, 16000M)")
    return float(match.group(1)) * _MEMORY_UNITS[(match.group(2) or "m").lower()]


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from err
    if not 0 < number < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be between 0 and 1")
    return number


def _resolution(value: str) -> float:
    number = _positive_float(value)
    if number not in RESOLUTIONS:
        allowed = ", ".join(f"{r:g}" for r in RESOLUTIONS)
        raise argparse.ArgumentTypeError(f"{value!r} is not one of {allowed} (mm)")
    return number


def _default(name: str) -> str:
    value = DEFAULTS[name]
    return "" if value is None else f" (default: {value})"


def get_parser() -> argparse.ArgumentParser:
    """Build the ``bgs_app`` argument parser.

    Returns
    -------
    argparse.ArgumentParser
        The parser; its usage errors raise :class:`bgs_app.errors.UsageError`.
    """
    parser = _Parser(
        prog="bgs_app",
        description=(
            "bgs_app: brain-genotype scores from T1-weighted MRI. The participant level "
            "preprocesses each T1w image (ANTs) and, given a model, scores it; the group "
            "level trains the multi-task CNN on genotypes and tests the scores for "
            "association with cognition."
        ),
        argument_default=argparse.SUPPRESS,
    )
    parser.add_argument("bids_dir", type=Path,
                        help="the root folder of a BIDS dataset (sub-XXXXX folders at the top)")
    parser.add_argument("output_dir", type=Path,
                        help="the output folder (a BIDS derivatives dataset)")
    parser.add_argument("analysis_level", metavar="{participant,group}",
                        help="processing stage: 'participant' (per subject) or 'group'")
    parser.add_argument("--version", action="version", version=f"bgs_app v{__version__}")

    g_bids = parser.add_argument_group("Options for filtering BIDS queries")
    g_bids.add_argument(
        "--participant-label", "--participant_label", dest="participant_label", nargs="+",
        metavar="LABEL",
        help="participants to analyse, with or without 'sub-' (e.g. 01 sub-02), or a file "
             "with one label per line; default: all")
    g_bids.add_argument(
        "--exclude-label", "--exclude_label", dest="exclude_label", nargs="+",
        metavar="LABEL",
        help="participants to leave out (e.g. those whose participant level failed, or QC "
             "outliers), with or without 'sub-', or a file with one label per line; the "
             "group level lists them in subjects.tsv")
    g_bids.add_argument("--session-label", "--session_label", dest="session_label", nargs="+",
                        metavar="LABEL", help="sessions to analyse, with or without 'ses-'")
    g_bids.add_argument("--bids-filter-file", dest="bids_filter_file", type=Path, metavar="FILE",
                        help="a JSON file of pybids queries per data type, e.g. "
                             '{"t1w": {"acquisition": "mprage"}}')
    g_bids.add_argument("--bids-database-dir", dest="bids_database_dir", type=Path,
                        metavar="PATH", help="a folder in which pybids keeps (or finds) its index")
    g_bids.add_argument("--skip-bids-validation", "--skip_bids_validation",
                        dest="skip_bids_validation", action="store_true",
                        help="do not validate the input dataset with bids-validator-deno")

    g_perf = parser.add_argument_group("Options to handle performance")
    g_perf.add_argument("--nprocs", "--n-cpus", "--n_cpus", "--nthreads", dest="nprocs",
                        type=_positive_int,
                        help="maximum number of processes (subjects in parallel)"
                             + _default("nprocs"))
    g_perf.add_argument("--omp-nthreads", dest="omp_nthreads", type=_positive_int,
                        help="maximum threads per process (ITK, torch)" + _default("omp_nthreads"))
    g_perf.add_argument("--mem-gb", "--mem_gb", dest="mem_gb", type=_positive_float,
                        help="upper bound of memory, in GB, for all processes")
    g_perf.add_argument("--mem", "--mem-mb", "--mem_mb", dest="mem_gb", type=_memory_gb,
                        metavar="MEMORY",
                        help="the same bound as fMRIPrep spells it: MB, or with a unit "
                             "(e.g. 16G)")
    g_perf.add_argument("--use-plugin", "--nipype-plugin-file", dest="use_plugin", type=Path,
                        metavar="FILE",
                        help="a TOML/YAML file naming a Nipype plugin (e.g. SLURM, SGE) "
                             "and its plugin_args")
    g_perf.add_argument("--device", dest="device", choices=("auto", "cpu", "cuda"),
                        help="device for the CNN" + _default("device"))

    g_conf = parser.add_argument_group("Workflow configuration")
    g_conf.add_argument("--resolution", dest="resolution", type=_resolution,
                        help="model-grid resolution in mm (1, 1.5, 2, 3, 4)"
                             + _default("resolution"))
    g_conf.add_argument("--template", dest="template", metavar="NAME_OR_IMAGE",
                        help="registration template: a name or a T1w image"
                             + _default("template"))
    g_conf.add_argument("--template-mask", dest="template_mask", type=Path, metavar="MASK",
                        help="brain mask of a template given as an image")
    g_conf.add_argument("--registration", dest="registration", choices=("syn", "affine"),
                        help="nonlinear (SyN after affine) or affine-only registration"
                             + _default("registration"))
    g_conf.add_argument("--sloppy", dest="sloppy", action="store_true",
                        help="fewer iterations everywhere (tests only; lower quality)")
    g_conf.add_argument("--skip-plausibility-checks", dest="skip_plausibility_checks",
                        action="store_true",
                        help="process images whose brain or intracranial volume, or whose "
                             "similarity to the template after registration, looks "
                             "implausible (by default they fail, with the reason)")
    g_conf.add_argument("--skull-strip-t1w", dest="skull_strip_t1w",
                        choices=("auto", "force", "skip"),
                        help="brain extraction: 'force' always, 'skip' for inputs that are "
                             "already brain-extracted (their non-zero voxels are the brain), "
                             "'auto' skips images whose faces are background and whose "
                             "non-zero voxels fill less than 2.5 l" + _default("skull_strip_t1w"))
    g_conf.add_argument("--skull-strip-method", dest="skull_strip_method",
                        choices=("ants", "deepbet"),
                        help="'deepbet': a deep brain extractor (its weights ship with it); "
                             "'ants': the template's brain mask through the registration, "
                             "refined on the image (it cut into the cortex at the vertex of "
                             "real heads: see the docs)" + _default("skull_strip_method"))
    g_conf.add_argument("--seed", "--random-seed", dest="seed", type=int,
                        help="random seed of every random step: registration sampling (ANTs), "
                             "splits, training (augmentation, dropout, order)" + _default("seed"))

    g_gen = parser.add_argument_group("Genotypes, model and phenotypes")
    g_gen.add_argument("--model", dest="model", type=Path, metavar="MODEL_DIR",
                       help="a model bundle folder: score subjects with it")
    g_gen.add_argument("--genotypes", dest="genotypes", metavar="FILE",
                       help="genotypes: PLINK 1 (.bed/.bim/.fam), PLINK 2 (.pgen/.pvar/"
                            ".psam, hard calls or dosages) or BGEN 1.2 (.bgen with .sample, "
                            "genotype probabilities; the second allele is counted), chosen "
                            "by extension; a bare prefix when only one format is there")
    g_gen.add_argument("--snps", dest="snps", nargs="+", metavar="RSID",
                       help="SNPs to predict; default: the packaged panel")
    g_gen.add_argument("--snps-file", dest="snps_file", type=Path, metavar="FILE",
                       help="a file with one rsID per line")
    g_gen.add_argument("--genotype-id-map", dest="genotype_id_map", type=Path, metavar="TSV",
                       help="TSV with participant_id and iid, when FAM IIDs are not the "
                            "BIDS labels")
    g_gen.add_argument("--maf", dest="maf", type=float,
                       help="minimum minor-allele frequency, as PLINK" + _default("maf"))
    g_gen.add_argument("--geno", dest="geno", type=float,
                       help="maximum missing-call rate of a SNP, as PLINK" + _default("geno"))
    g_gen.add_argument("--hwe", dest="hwe", type=float,
                       help="minimum Hardy-Weinberg exact p, as PLINK" + _default("hwe"))
    g_gen.add_argument("--mind", dest="mind", type=float,
                       help="maximum missing-call rate of a person, as PLINK"
                            + _default("mind"))
    g_gen.add_argument("--min-info", dest="min_info", type=float, metavar="R2",
                       help="minimum imputation r² (MaCH Rsq from the dosages, as plink2's "
                            "MACH_R2; e.g. 0.8); default: no filter")
    g_gen.add_argument("--keep", dest="keep", type=Path, metavar="FILE",
                       help="only these genotyped people (PLINK --keep file: FID IID or "
                            "IID per line), e.g. one ancestry group or a QC pass list")
    g_gen.add_argument("--remove", dest="remove", type=Path, metavar="FILE",
                       help="leave out these genotyped people (PLINK --remove file)")
    g_gen.add_argument("--kinship", dest="kinship", type=Path, metavar="FILE",
                       help="pairwise kinship (KING .kin0/.kin, or UK Biobank's ID1 ID2 "
                            "HetHet IBS0 Kinship), IDs as the genotype file's IIDs: "
                            "relatives never straddle a split, and the associations use "
                            "one person per related pair")
    g_gen.add_argument("--kinship-threshold", dest="kinship_threshold", type=float,
                       metavar="PHI", help="kinship at which two people count as related "
                                           "(default 0.0442: third degree, as KING)")
    g_gen.add_argument("--keep-relatives", dest="keep_relatives", action="store_true",
                       help="with --kinship: keep every relative in the associations "
                            "(the splits stay family-aware)")
    g_gen.add_argument("--ancestry-column", dest="ancestry_column", metavar="COLUMN",
                       help="a column of participants.tsv (or phenotype/*.tsv) naming each "
                            "participant's ancestry group: held-out performance and the "
                            "associations are repeated within each group "
                            "(performance_by_ancestry.tsv, associations_by_ancestry.tsv)")
    g_gen.add_argument("--genetic-pcs", dest="genetic_pcs", type=int, metavar="N",
                       help="add N genetic principal components as covariates")
    g_gen.add_argument("--pca-genotypes", dest="pca_genotypes", metavar="GENOTYPES",
                       help="genome-wide, LD-thinned genotypes for the genetic PCs (PLINK "
                            "1 prefix, .pgen or .bgen; at "
                            "least 1,000 SNPs once the tested SNPs and 500 kb around them "
                            "are left out); without it --genetic-pcs reads pc1 ... pcK "
                            "columns of the tables")
    g_gen.add_argument("--nonlinear-age", dest="nonlinear_age", action="store_true",
                       help="add age^2 and age x sex to the covariates")
    g_gen.add_argument("--phenotypes", dest="phenotypes", nargs="+", metavar="COLUMN",
                       help="cognitive measures (columns of participants.tsv or phenotype/*.tsv)")
    g_gen.add_argument("--covariates", dest="covariates", nargs="+", metavar="COLUMN",
                       help="covariates of the association models: columns of "
                            "participants.tsv or phenotype/*.tsv, or an IDP such as etiv "
                            "(from the participant level's tables); default: those of age, "
                            "sex, site that exist")
    g_gen.add_argument("--phenotype-session", dest="phenotype_session",
                       choices=("match", "first", "last", "mean"),
                       help="phenotype tables with several visits (session_id): the visit "
                            "of the participant's image (else the first), the first, the "
                            "last, or the mean" + _default("phenotype_session"))
    g_gen.add_argument("--score-gate", dest="score_gate", choices=SCORE_GATES,
                       help="which scores are tested against cognition: 'validated' only "
                            "those whose held-out score predicts the genotype (Bonferroni "
                            "over SNPs); 'none' every score" + _default("score_gate"))
    g_gen.add_argument("--fdr-method", dest="fdr_method", choices=FDR_METHODS,
                       help="false-discovery-rate q within each family: Benjamini-Hochberg "
                            "(bh) or Benjamini-Yekutieli (by; valid under any dependence "
                            "of the scores)" + _default("fdr_method"))

    g_model = parser.add_argument_group("Training, scores and saliency")
    g_model.add_argument("--test-fraction", dest="test_fraction", type=_fraction,
                         help="held-out test fraction" + _default("test_fraction"))
    g_model.add_argument("--val-fraction", dest="val_fraction", type=_fraction,
                         help="validation fraction (early stopping)"
                              + _default("val_fraction"))
    g_model.add_argument("--cv-folds", dest="cv_folds", type=int, metavar="K",
                         help="cross-fitting: K models, each scoring the fold it never saw "
                              "(0: one train/val/test split)" + _default("cv_folds"))
    g_model.add_argument("--epochs", dest="epochs", type=_positive_int,
                         help="maximum training epochs" + _default("epochs"))
    g_model.add_argument("--batch-size", dest="batch_size", type=_positive_int,
                         help="volumes per training step" + _default("batch_size"))
    g_model.add_argument("--learning-rate", dest="learning_rate", type=_positive_float,
                         help="peak learning rate (AdamW, warm-up and cosine decay)"
                              + _default("learning_rate"))
    g_model.add_argument("--channels", dest="channels", type=_positive_int, nargs="+",
                         metavar="N", help="SFCN widths: five 3^3 blocks, then the 1^3 block"
                                           + _default("channels"))
    g_model.add_argument("--patience", dest="patience", type=_positive_int,
                         help="early stopping: epochs without a better validation loss"
                              + _default("patience"))
    g_model.add_argument("--checkpoint-selection", dest="checkpoint_selection",
                         choices=("informative", "mean"),
                         help="how the best epoch and early stopping are judged: "
                              "informative (only heads that beat their genotype prior on "
                              "the validation set count, so null heads do not decide) or "
                              "mean (the mean validation cross-entropy over every head)"
                              + _default("checkpoint_selection"))
    g_model.add_argument("--poolings", dest="poolings", metavar="all|auto|K",
                         help="how many 3^3 blocks end with a 2x max-pooling: all (SFCN), "
                              "auto (as many as keep a last map of at least 5 voxels per "
                              "axis, e.g. 5x6x5 at 1, 2 and 4 mm) or a number"
                              + _default("poolings"))
    g_model.add_argument("--readout", dest="readout", choices=("mean", "flatten"),
                         help="the heads read the average of the last feature map (mean, "
                              "SFCN) or all of it (flatten: location-aware)"
                              + _default("readout"))
    g_model.add_argument("--coord-channels", dest="coord_channels", action="store_true",
                         help="add three input channels of voxel coordinates")
    g_model.add_argument("--norm", dest="norm", choices=("batch", "group"),
                         help="normalisation after each convolution: BatchNorm or GroupNorm"
                              " (8 groups; for small batches)" + _default("norm"))
    g_model.add_argument("--max-shift", dest="max_shift", type=int, metavar="VOXELS",
                         help="largest augmentation shift per axis in voxels (0: none; "
                              "default: 3 mm rounded to voxels)")
    g_model.add_argument("--ensemble", dest="ensemble", type=_positive_int, metavar="K",
                         help="train K networks per model with seeds --seed to --seed+K-1 "
                              "and average their genotype probabilities (K times the "
                              "training, scoring and saliency time)" + _default("ensemble"))
    g_model.add_argument("--cnn-input", dest="cnn_input",
                         choices=("auto", "t1w", "logjacobian"),
                         help="what the CNN reads: the log-Jacobian map of the nonlinear "
                              "registration on the model grid (logjacobian: tensor-based "
                              "morphometry; the participant level writes it with "
                              "--registration syn), the affinely aligned T1w (t1w), or "
                              "auto: logjacobian when every image has its map, else t1w"
                              + _default("cnn_input"))
    g_model.add_argument("--no-voxel-baseline", dest="no_voxel_baseline",
                         action="store_true",
                         help="skip the voxel-ridge baseline (ridge logistic regression on "
                              "the model-grid voxels, on the CNN's split)")
    g_model.add_argument("--voxelwise-test", dest="voxelwise_test", action="store_true",
                         help="also run the voxelwise genotype test on the held-out images "
                              "(image ~ dosage + covariates at every voxel, permutation "
                              "family-wise error control; seconds to minutes per SNP)")
    g_model.add_argument("--torch-compile", dest="torch_compile", action="store_true",
                         help="compile the network with torch.compile (GPUs; slower to "
                              "start, faster per step)")
    g_model.add_argument("--saliency-method", dest="saliency_method",
                         choices=("gradient", "integrated_gradients", "smoothgrad"),
                         help="attribution method (default: gradient for participant maps, "
                              "integrated_gradients for group maps)")
    g_model.add_argument("--ig-steps", dest="ig_steps", type=_positive_int,
                         help="Integrated Gradients path steps" + _default("ig_steps"))
    g_model.add_argument("--saliency-native", dest="saliency_native", action="store_true",
                         help="also write participant saliency maps in native T1w space")
    g_model.add_argument("--saliency-by-genotype", dest="saliency_by_genotype",
                         action="store_true",
                         help="also average group saliency within each genotype class")
    g_model.add_argument("--no-saliency", dest="no_saliency", action="store_true",
                         help="skip saliency maps")

    g_other = parser.add_argument_group("Other options")
    g_other.add_argument("-w", "--work-dir", dest="work_dir", type=Path, metavar="PATH",
                         help="a folder for intermediate results (resumable)")
    g_other.add_argument("--config-file", dest="config_file", type=Path, metavar="FILE",
                         help="a TOML or YAML file whose keys are the long option names; "
                              "options on the command line win")
    g_other.add_argument("--clean-workdir", dest="clean_workdir", action="store_true",
                         help="remove an image's work folder once its outputs are complete "
                              "(failed images keep theirs, for inspection)")
    g_other.add_argument("--stop-on-first-crash", dest="stop_on_first_crash",
                         action="store_true", help="stop at the first failing subject or step")
    g_other.add_argument("--reports-only", dest="reports_only", action="store_true",
                         help="only rebuild the reports from existing outputs")
    g_other.add_argument("--boilerplate-only", "--boilerplate_only", "--boilerplate",
                         dest="boilerplate_only",
                         action="store_true",
                         help="only write the methods boilerplate for the chosen options")
    g_other.add_argument("-v", "--verbose", dest="verbose", action="count",
                         help="more verbose output (-v, -vv)")
    g_other.add_argument("--notrack", dest="notrack", action="store_true",
                         help="accepted for fMRIPrep compatibility: bgs_app sends nothing "
                              "anywhere")
    return parser


def _config_file_tokens(path: Path, parser: argparse.ArgumentParser) -> list[str]:
    """Turn a TOML/YAML configuration file into command-line tokens (placed before argv)."""
    from bgs_app.config import read_config_file

    values = read_config_file(path)
    options = {}
    for action in parser._actions:
        for opt in action.option_strings:
            if opt.startswith("--"):
                options.setdefault(action.dest, (opt, action))
    tokens: list[str] = []
    unknown = []
    for key, value in values.items():
        dest = key.replace("-", "_")
        if dest not in options or dest in {"config_file", "version", "help"}:
            unknown.append(key)
            continue
        opt, action = options[dest]
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise UsageError(f"{path}: '{key}' must be true or false, not {value!r}")
            if value:
                tokens.append(opt)
        elif isinstance(action, argparse._CountAction):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{path}: '{key}' must be a count (0, 1, 2), not {value!r}")
            tokens.extend([opt] * value)
        elif isinstance(value, list | tuple):
            if action.nargs not in ("+", "*"):
                raise UsageError(f"{path}: '{key}' takes one value, not a list ({value!r})")
            tokens.append(opt)
            tokens.extend(str(v) for v in value)
        elif isinstance(value, dict):
            raise UsageError(f"{path}: '{key}' takes a value, not a table ({value!r})")
        else:
            if action.nargs in ("+", "*"):
                value = [value]
                tokens.append(opt)
                tokens.extend(str(v) for v in value)
                continue
            tokens.extend([opt, str(value)])
    if unknown:
        valid = sorted(d.replace("_", "-") for d in options if d not in {"config_file", "help"})
        raise UsageError(
            f"{path}: unknown option(s) {', '.join(unknown)}; valid keys are the long option "
            f"names: {', '.join(valid)}")
    return tokens


def parse_args(argv: list[str] | None = None) -> Config:
    """Parse the command line (and the optional configuration file) into a :class:`Config`.

    Parameters
    ----------
    argv : list of str, optional
        Arguments without the program name; default ``sys.argv[1:]``.

    Returns
    -------
    Config
        The frozen run configuration.

    Raises
    ------
    UsageError
        Wrong usage (exit code 64).
    UnknownLevelError
        An analysis level other than ``participant`` or ``group`` (exit code 17).
    """
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = get_parser()
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config-file", dest="config_file", type=Path)
    known, _ = pre.parse_known_args(argv)
    values: dict = {}
    if known.config_file is not None:
        tokens = _config_file_tokens(known.config_file, parser)
        # Dummy positionals: the file may only hold options. Every action defaults to
        # SUPPRESS, so the namespaces hold only what was given, and the command line
        # (parsed second) overrides the file.
        try:
            from_file = vars(parser.parse_args(["_", "_", "_", *tokens]))
        except UsageError as err:
            raise UsageError(f"{known.config_file}: {str(err).splitlines()[0]}") from err
        for key in ("bids_dir", "output_dir", "analysis_level"):
            from_file.pop(key)
        values.update(from_file)
    values.update(vars(parser.parse_args(argv)))
    values.pop("notrack", None)  # fMRIPrep's; nothing to turn off
    if values["analysis_level"] not in LEVELS:
        raise UnknownLevelError(
            f"unknown analysis level {values['analysis_level']!r}: choose one of "
            f"{', '.join(LEVELS)}")
    if "participant_label" in values:
        values["participant_label"] = _read_labels(values["participant_label"], "sub-")
    if "exclude_label" in values:
        values["exclude_label"] = _read_labels(values["exclude_label"], "sub-")
    if "session_label" in values:
        values["session_label"] = _read_labels(values["session_label"], "ses-")
    return Config.create(**values)


def _read_labels(values: list[str], prefix: str) -> tuple[str, ...]:
    """Labels given as values or in a file (one per line), without their BIDS prefix."""
    labels: list[str] = []
    for value in values:
        path = Path(value)
        if len(values) == 1 and path.is_file():
            lines = path.read_text().split()
            labels.extend(line.strip() for line in lines if line.strip())
        else:
            labels.append(value)
    cleaned = []
    for label in labels:
        label = label.strip()
        if label.startswith(prefix):
            label = label[len(prefix):]
        if not label or not label.isalnum():
            raise UsageError(f"invalid label {label!r}: BIDS labels are alphanumeric")
        if label not in cleaned:
            cleaned.append(label)
    return tuple(cleaned)

