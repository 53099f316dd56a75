"""One frozen run configuration, built from the command line and an optional file.

Nothing below :mod:`bgs_app.cli` reads the command line: workflows, the group
level and reports receive a :class:`Config`. Defaults live here (``DEFAULTS``);
the options themselves live in :mod:`bgs_app.cli.parser`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bgs_app.errors import UsageError
from bgs_app.templates import DEFAULT_TEMPLATE

LEVELS = ("participant", "group")
# Which scores enter the association family (bgs_app.stats.gate): the first is the default.
SCORE_GATES = ("validated", "none")
# False-discovery-rate method within each family: Benjamini-Hochberg (the default) or
# Benjamini-Yekutieli (valid under any dependence between the family's tests).
FDR_METHODS = ("bh", "by")
RESOLUTIONS = (1.0, 1.5, 2.0, 3.0, 4.0)
#: The most networks ``--ensemble`` trains per model (and a bundle may hold).
MAX_ENSEMBLE = 16
LOGGER = logging.getLogger("bgs_app")
# The queries of an fMRIPrep/sMRIPrep --bids-filter-file other than 't1w'.
FMRIPREP_QUERIES = frozenset({"bold", "sbref", "fmap", "t2w", "flair", "roi", "pet", "asl",
                              "dwi", "epi", "phase", "magnitude"})


def _default_nprocs() -> int:
    from bgs_app.utils.processes import usable_cpus

    return usable_cpus()


#: Defaults of ``--skull-strip-t1w`` and ``--skull-strip-method`` (checked in Config.create).
DEFAULT_SKULL_STRIP = {"skull_strip_t1w": "auto", "skull_strip_method": "deepbet"}


@dataclasses.dataclass(frozen=True)
class Config:
    """The configuration of one run of ``bgs_app``.

    Build it with :meth:`Config.create` (which checks and normalises values) or
    from the command line with :func:`bgs_app.cli.parser.parse_args`.
    """

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    participant_label: tuple[str, ...] | None = None
    exclude_label: tuple[str, ...] | None = None
    session_label: tuple[str, ...] | None = None
    bids_filter_file: Path | None = None
    bids_filters: dict | None = None
    bids_database_dir: Path | None = None
    skip_bids_validation: bool = False
    nprocs: int = dataclasses.field(default_factory=_default_nprocs)
    omp_nthreads: int | None = None
    mem_gb: float | None = None
    device: str = "auto"
    resolution: float = 2.0
    template: str = DEFAULT_TEMPLATE
    template_mask: Path | None = None
    registration: str = "syn"
    sloppy: bool = False
    skip_plausibility_checks: bool = False
    skull_strip_t1w: str = "auto"
    skull_strip_method: str = "deepbet"
    use_plugin: Path | None = None
    seed: int = 0
    model: Path | None = None
    genotypes: str | None = None
    snps: tuple[str, ...] | None = None
    snps_file: Path | None = None
    genotype_id_map: Path | None = None
    maf: float = 0.01
    geno: float = 0.1
    hwe: float = 1e-6
    mind: float = 0.1
    min_info: float | None = None
    keep: Path | None = None
    remove: Path | None = None
    kinship: Path | None = None
    kinship_threshold: float = 0.0442
    keep_relatives: bool = False
    ancestry_column: str | None = None
    genetic_pcs: int = 0
    pca_genotypes: str | None = None
    phenotypes: tuple[str, ...] | None = None
    covariates: tuple[str, ...] | None = None
    nonlinear_age: bool = False
    score_gate: str = SCORE_GATES[0]
    fdr_method: str = FDR_METHODS[0]
    phenotype_session: str = "match"
    saliency_method: str | None = None
    saliency_native: bool = False
    saliency_by_genotype: bool = False
    ig_steps: int = 32
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    cv_folds: int = 0
    epochs: int = 30
    batch_size: int = 4
    learning_rate: float = 1e-3
    channels: tuple[int, ...] = (32, 64, 128, 256, 256, 64)
    patience: int = 10
    checkpoint_selection: str = "informative"
    poolings: str = "all"
    readout: str = "mean"
    coord_channels: bool = False
    norm: str = "batch"
    max_shift: int | None = None
    ensemble: int = 1
    cnn_input: str = "auto"
    no_saliency: bool = False
    no_voxel_baseline: bool = False
    voxelwise_test: bool = False
    torch_compile: bool = False
    work_dir: Path | None = None
    config_file: Path | None = None
    stop_on_first_crash: bool = False
    clean_workdir: bool = False
    reports_only: bool = False
    boilerplate_only: bool = False
    verbose: int = 0
    run_id: str = ""

    @classmethod
    def create(cls, **values: Any) -> Config:
        """Check and normalise ``values`` and return a frozen configuration.

        Parameters
        ----------
        **values
            Field values; missing ones take their defaults. Paths are made
            absolute, lists become tuples, the BIDS filter file is read.

        Returns
        -------
        Config
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise UsageError(f"unknown configuration option(s): {', '.join(sorted(unknown))}")
        for name in ("bids_dir", "output_dir", "bids_filter_file", "bids_database_dir",
                     "template_mask", "model", "work_dir", "config_file", "use_plugin",
                     "snps_file", "genotype_id_map", "keep", "remove", "kinship"):
            if values.get(name) is not None:
                values[name] = Path(values[name]).expanduser().absolute()
        for name in ("participant_label", "exclude_label", "session_label", "snps",
                     "phenotypes", "covariates", "channels"):
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        if values.get("genotypes") is not None:
            values["genotypes"] = str(Path(values["genotypes"]).expanduser().absolute())
        if values.get("bids_filter_file") is not None and values.get("bids_filters") is None:
            values["bids_filters"] = read_bids_filters(values["bids_filter_file"])
        if values.get("score_gate", SCORE_GATES[0]) not in SCORE_GATES:
            raise UsageError(f"score_gate must be one of {', '.join(SCORE_GATES)}, not "
                             f"{values['score_gate']!r}")
        for name, allowed in (("skull_strip_t1w", ("auto", "force", "skip")),
                              ("skull_strip_method", ("ants", "deepbet")),
                              ("readout", ("mean", "flatten")),
                              ("cnn_input", ("auto", "t1w", "logjacobian")),
                              ("norm", ("batch", "group"))):
            if values.get(name, allowed[0] if name not in DEFAULT_SKULL_STRIP
                          else DEFAULT_SKULL_STRIP[name]) not in allowed:
                raise UsageError(f"{name} must be one of {', '.join(allowed)}, not "
                                 f"{values[name]!r}")
        poolings = str(values.get("poolings", "all"))
        blocks = len(values.get("channels") or cls.channels) - 1
        if poolings not in ("all", "auto") and not (poolings.isdigit()
                                                    and int(poolings) <= blocks):
            raise UsageError(f"poolings must be all, auto or a number of pooled blocks "
                             f"(0-{blocks}, the 3^3 blocks of --channels), not {poolings!r}")
        if values.get("max_shift") is not None and int(values["max_shift"]) < 0:
            raise UsageError("max_shift must be 0 or more voxels")
        if not 1 <= int(values.get("ensemble", 1)) <= MAX_ENSEMBLE:
            raise UsageError(f"ensemble must be from 1 to {MAX_ENSEMBLE} networks, not "
                             f"{values['ensemble']!r}")
        values["poolings"] = poolings
        if values.get("skull_strip_method") == "deepbet":
            import importlib.util

            if importlib.util.find_spec("deepbet") is None:
                raise UsageError("--skull-strip-method deepbet needs the optional package "
                                 "deepbet: pip install 'bgs_app[deepbet]' (its weights ship "
                                 "inside the wheel; nothing is downloaded at run time)")
        values.setdefault("run_id", datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
                          + f"_{os.getpid()}")
        return cls(**values)

    @property
    def threads_per_process(self) -> int:
        """Threads each process may use (``--omp-nthreads``, else all of ``--nprocs``),
        at most the CPUs this process may run on."""
        from bgs_app.utils.processes import usable_cpus

        return min(self.omp_nthreads or self.nprocs, usable_cpus())

    def to_dict(self) -> dict[str, Any]:
        """Plain values (paths as strings, tuples as lists, unset values left out)."""
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[field.name] = value
        return out

    def write(self, log_dir: Path | None = None) -> Path:
        """Record this configuration as ``OUT_DIR/logs/config-<run_id>.toml``.

        Returns
        -------
        pathlib.Path
            The written file.
        """
        import tomli_w

        from bgs_app.utils.atomic import write_text

        log_dir = Path(log_dir or self.output_dir / "logs")
        values = self.to_dict()
        values.pop("bids_filters", None)
        text = "# bgs_app run configuration\n" + tomli_w.dumps(values)
        if self.bids_filters:
            text += "\n# BIDS filters in force\n" + "".join(
                f"# {line}\n" for line in json.dumps(self.bids_filters, indent=1).splitlines())
        return write_text(log_dir / f"config-{self.run_id}.toml", text)


DEFAULTS: dict[str, Any] = {
    f.name: (f.default if f.default is not dataclasses.MISSING else
             f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
    for f in dataclasses.fields(Config)
}


def read_config_file(path: Path) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yml``/``.yaml``) configuration file.

    Parameters
    ----------
    path : pathlib.Path
        The file. Keys are long option names, with dashes or underscores.

    Returns
    -------
    dict
        The flat mapping of option names to values.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"configuration file {path} does not exist")
    text = path.read_text()
    try:
        if path.suffix.lower() in {".yml", ".yaml"}:
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = tomllib.loads(text)
    except Exception as err:  # the parsers raise their own error types
        raise UsageError(f"cannot read configuration file {path}: {err}") from err
    if not isinstance(values, dict):
        raise UsageError(f"configuration file {path} must hold a mapping of option names")
    # A TOML file written by Config.write may carry the fields that are not options.
    for key in ("bids_dir", "output_dir", "analysis_level", "run_id"):
        values.pop(key, None)
    return values


def read_bids_filters(path: Path) -> dict[str, dict]:
    """Read a ``--bids-filter-file``: a JSON object of pybids queries per data type.

    Parameters
    ----------
    path : pathlib.Path

    Returns
    -------
    dict
        ``{"t1w": {...}}``-style queries.
    """
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"BIDS filter file {path} does not exist")
    try:
        filters = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UsageError(f"BIDS filter file {path} is not valid JSON: {err}") from err
    if not isinstance(filters, dict) or not all(isinstance(v, dict) for v in filters.values()):
        raise UsageError(
            f'BIDS filter file {path} must map data types to queries, e.g. '
            f'{{"t1w": {{"acquisition": "mprage"}}}}')
    # An fMRIPrep/sMRIPrep filter file also has queries for data bgs_app does not read.
    other = sorted(set(filters) & FMRIPREP_QUERIES)
    if other:
        LOGGER.warning("BIDS filter file %s: ignoring the query of %s (bgs_app reads only "
                       "'t1w')", path, ", ".join(other))
        filters = {k: v for k, v in filters.items() if k not in FMRIPREP_QUERIES}
    unknown = set(filters) - {"t1w"}
    if unknown:
        raise UsageError(
            f"BIDS filter file {path}: unknown data type(s) {', '.join(sorted(unknown))}; "
            "bgs_app reads 't1w' (and ignores fMRIPrep's "
            f"{', '.join(sorted(FMRIPREP_QUERIES))})")
    for kind, query in filters.items():
        for key in query:
            if key in SELECTION_KEYS:
                raise UsageError(
                    f"BIDS filter file {path}: '{kind}' has a {key!r} key; choose "
                    f"{key}s with {SELECTION_KEYS[key]} instead")
            if key not in FILTER_ENTITIES:
                raise UsageError(
                    f"BIDS filter file {path}: '{kind}' filters on {key!r}, which is not a "
                    f"BIDS entity pybids knows; use one of "
                    f"{', '.join(sorted(FILTER_ENTITIES))}")
    return filters


#: Keys of a BIDS filter query that select participants or sessions: the command line
#: does that (a filter file with them would be silently overridden, or clash).
SELECTION_KEYS = {"subject": "--participant-label", "session": "--session-label"}
#: What a pybids query of the T1w images may filter on (pybids' BIDS entities).
FILTER_ENTITIES = frozenset({
    "acquisition", "ceagent", "reconstruction", "run", "part", "echo", "flip", "inv", "mt",
    "task", "direction", "space", "chunk", "sample", "tracksys", "proc", "modality",
    "suffix", "datatype", "extension", "scans"})


def work_root(config: Config) -> Path:
    """The work folder: ``-w``, else ``OUT_DIR/../work/bgs_app_<name>`` next to the output."""
    if config.work_dir is not None:
        return config.work_dir
    return config.output_dir.parent / "work" / f"bgs_app_{config.output_dir.name}"


#: Gaussian smoothing of group saliency and genotype-correlation maps (sigma, mm; FWHM
#: about 14 mm, as in voxel-based morphometry): single-voxel gradients are noisy, and the
#: anatomy an effect changes (the boundaries it moves) surrounds its centre. The group
#: level smooths with it and the methods boilerplate names it.
GROUP_SMOOTHING_MM = 6.0


@dataclasses.dataclass(frozen=True)
class RunContext:
    """What a run resolves once from its :class:`Config` and passes on.

    Attributes
    ----------
    config : Config
    template : bgs_app.templates.Template
        ``--template`` (and ``--template-mask``) resolved to files.
    device : str
        ``cpu`` or ``cuda[:k]`` for the CNN (``--device``; ``auto`` resolved); ``cpu`` at
        the participant level, whose workers score on the CPU.
    rank, world_size, local_rank : int
        This process's place among the processes ``torchrun`` launched (0, 1, 0 alone).
    """

    config: Config
    template: Any
    device: str = "cpu"
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """The process that writes outputs (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Launched by ``torchrun`` with more than one process."""
        return self.world_size > 1

    @property
    def work(self) -> Path:
        """The work folder (see :func:`work_root`)."""
        return work_root(self.config)

    @property
    def group_dir(self) -> Path:
        """``OUT_DIR/group``."""
        return self.config.output_dir / "group"

    @property
    def group_work(self) -> Path:
        """Where the group level keeps its tensor store, checkpoints and stage stamps."""
        return self.work / "group"


def resolve_context(config: Config, *, device: bool = False) -> RunContext:
    """Resolve the template, the device and the ``torchrun`` environment of a run, once.

    Parameters
    ----------
    config : Config
    device : bool
        Resolve ``--device`` (imports torch: the group level only; the participant level's
        main process must not start torch before its workers fork).

    Returns
    -------
    RunContext
    """
    from bgs_app.templates import get_template

    template = get_template(config.template, str(config.template_mask)
                            if config.template_mask else None)
    resolved = resolve_device(config.device) if device else "cpu"
    from bgs_app.utils.processes import torchrun_environment

    rank, world, local = torchrun_environment()
    return RunContext(config=config, template=template, device=resolved, rank=rank,
                      world_size=world, local_rank=local)


def resolve_device(requested: str) -> str:
    """The torch device of ``--device``, logged; ``cuda`` without a GPU is refused.

    Parameters
    ----------
    requested : str
        ``auto`` (CUDA when torch sees a GPU, else the CPU), ``cpu`` or ``cuda``.

    Returns
    -------
    str
        ``cpu`` or ``cuda``.

    Raises
    ------
    UsageError
        ``cuda`` was asked for and torch sees no CUDA device (a CPU build of torch, a
        container started without ``--nv``/``--gpus``, or no GPU on the node).
    """
    import torch

    available = torch.cuda.is_available()
    if requested == "cuda" and not available:
        build = torch.version.cuda
        why = (f"this torch {torch.__version__} is a CPU build" if build is None else
               f"torch {torch.__version__} (CUDA {build}) sees no GPU")
        raise UsageError(f"--device cuda: {why}. Use --device cpu (or auto), or run on a "
                         "node with a GPU (containers: apptainer --nv, docker --gpus all) "
                         "with the CUDA image")
    resolved = "cuda" if requested == "cuda" or (requested == "auto" and available) else "cpu"
    if resolved == "cuda":
        props = torch.cuda.get_device_properties(0)
        LOGGER.info("Device: cuda (%s, %.0f GiB; %d GPU(s) visible; --device %s)",
                    props.name, props.total_memory / 2**30, torch.cuda.device_count(),
                    requested)
    else:
        note = "; no CUDA device visible" if requested == "auto" else ""
        LOGGER.info("Device: cpu (%d thread(s); --device %s%s)", torch.get_num_threads(),
                    requested, note)
    return resolved
