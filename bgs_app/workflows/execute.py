"""Running the participant workflow: plugins, resuming, failures, summary, reports."""

from __future__ import annotations

import gc
import logging
import multiprocessing as mp
import os
import re
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from nipype.pipeline.plugins.multiproc import MultiProcPlugin

from bgs_app.bids.derivatives import snp_labels
from bgs_app.bids.inputs import T1wInput, ensure_writable
from bgs_app.config import Config, RunContext
from bgs_app.errors import EXIT_FAILURE, EXIT_SUCCESS, BgsError
from bgs_app.interfaces.io import read_record
from bgs_app.utils.hashing import file_sha256
from bgs_app.utils.processes import die_with_parent, usable_cpus
from bgs_app.workflows.base import (
    branch_name,
    branch_settings,
    expected_outputs,
    init_participant_wf,
    record_path,
)
from bgs_app.workflows.scores import ScoringOptions

LOGGER = logging.getLogger("bgs_app")
#: Images per Nipype graph and process (see run_participant_workflow).
BATCH_PER_PROCESS = 4
#: Nipype plugins that hand the whole graph to a scheduler and return at once: bgs_app
#: would find no outputs and report every image failed.
GRAPH_PLUGINS = frozenset({"slurmgraph", "sgegraph", "pbsgraph", "condordagman"})
#: Plugins that submit each node as a cluster job and wait for it: no batches, every
#: image at once (the scheduler, not this process, limits what runs).
CLUSTER_PLUGINS = frozenset({"slurm", "sge", "pbs", "lsf", "condor", "oar", "ipython"})


def settings_of(config: Config, template_name: str,
                scoring: ScoringOptions | None = None) -> dict:
    """The settings a branch's outputs depend on (recorded in its completion record)."""
    return branch_settings(template=template_name, resolution=config.resolution,
                           registration=config.registration, sloppy=config.sloppy,
                           seed=config.seed, scoring=scoring,
                           skull_strip=config.skull_strip_t1w,
                           skull_strip_method=config.skull_strip_method)


def scoring_options(config: Config, template_name: str) -> ScoringOptions | None:
    """The ``--model`` settings, after checking the bundle against the grid and template."""
    if config.model is None:
        return None
    from bgs_app.grid import grid_metadata
    from bgs_app.model.bundle import read_bundle

    meta = read_bundle(config.model, expect_grid=grid_metadata(config.resolution,
                                                                  template_name))
    snp_labels(s["snp"] for s in meta["snps"])  # their maps' names must not collide
    method = None if config.no_saliency else (config.saliency_method or "gradient")
    kind = str(meta["grid"].get("Input", "t1w"))
    if kind == "logjacobian" and config.registration != "syn":
        raise BgsError(f"the model in {config.model} reads log-Jacobian maps of the "
                       "nonlinear registration; run with --registration syn (the default)")
    return ScoringOptions(model_dir=config.model, snps=tuple(s["snp"] for s in meta["snps"]),
                          weights_sha256=meta["weights_sha256"], saliency_method=method,
                          ig_steps=config.ig_steps, native=config.saliency_native,
                          input=kind)


def is_complete(config: Config, t1w: T1wInput, template_name: str,
                scoring: ScoringOptions | None = None) -> bool:
    """True when a branch's outputs exist, and were made from this input and settings."""
    record = read_record(record_path(config.output_dir, t1w))
    if not record or record.get("settings") != settings_of(config, template_name, scoring):
        return False
    if not all(Path(p).is_file() for p in record.get("outputs", [])):
        return False
    paths = expected_outputs(config.output_dir, t1w, template_name, config.resolution,
                             config.registration, scoring)
    if not all(p.is_file() for p in paths.values()):
        return False
    stat = Path(t1w.path).stat()
    if (record.get("input_size"), record.get("input_mtime_ns")) == (stat.st_size,
                                                                    stat.st_mtime_ns):
        return True  # unchanged since it was processed: not hashed again
    return record.get("input_sha256") == file_sha256(t1w.path)


def _crash_message(crash_dir: Path, name: str, since: float) -> str:
    """The last line of the newest crash file of a branch (the error itself)."""
    best, when = None, since
    for path in crash_dir.glob("crash-*.txt"):
        if name in path.name or name in path.read_text(errors="replace")[:4000]:
            if path.stat().st_mtime >= when:
                best, when = path, path.stat().st_mtime
    if best is None:
        return "failed (no crash file; see the log)"
    lines = [line.strip() for line in best.read_text(errors="replace").splitlines()
             if line.strip()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]*(Error|Exception)\b.*:", line)]
    message = errors[-1] if errors else lines[-1]
    message = re.sub(r"^[A-Za-z_.]*\.(\w+Error)", r"\1", message)
    return f"{message} (crash file: {best})"


def run_participant_workflow(context: RunContext, inputs: list[T1wInput],
                             failed_before: dict[str, str] | None = None) -> int:
    """Build and run the participant workflow; report failures; return the exit code.

    Parameters
    ----------
    context : bgs_app.config.RunContext
    inputs : list of T1wInput
        The images to process.
    failed_before : dict, optional
        ``{"sub-<label>": reason}`` of requested participants that could not even be
        selected (no T1w image): reported with the failed images.
    """
    from nipype import config as ncfg
    from nipype import logging as nlogging

    config, template = context.config, context.template
    scoring = scoring_options(config, template.name)
    done = [t for t in inputs if is_complete(config, t, template.name, scoring)]
    todo = [t for t in inputs if t not in done]
    for t1w in done:
        LOGGER.info("%s: outputs complete and current; skipped", t1w.path.name)
    crash_dir = config.output_dir / "logs" / "crash"
    started = time.time()
    failures: dict[str, str] = {}
    unselected = dict(failed_before or {})
    if todo:
        base = ensure_writable(context.work, "default work folder",
                               "pass a writable work folder with -w (in a container: bind a "
                               "writable host folder and pass its path)")
        crash_dir.mkdir(parents=True, exist_ok=True)
        ncfg.update_config({
            "execution": {"crashdump_dir": str(crash_dir), "crashfile_format": "txt",
                          "stop_on_first_crash": config.stop_on_first_crash,
                          "remove_unnecessary_outputs": False, "hash_method": "timestamp",
                          "poll_sleep_duration": 0.05, "create_report": False},
            "logging": {"log_directory": str(config.output_dir / "logs"),
                        "workflow_level": "DEBUG" if config.verbose >= 2 else "WARNING",
                        "interface_level": "DEBUG" if config.verbose >= 2 else "WARNING"},
            "monitoring": {"enabled": False},
        })
        nlogging.update_logging(ncfg)
        if config.verbose < 2:
            # Failures are summarised at the end (crash files hold the tracebacks).
            logging.getLogger("nipype.workflow").setLevel(logging.CRITICAL)
        os.environ["ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS"] = str(config.threads_per_process)
        plugin, plugin_args = _plugin(config, len(todo))
        progress = _Progress(todo)
        # Nipype's MultiProc calls gc.collect() before every submission; with pybids,
        # nilearn and torch loaded, each took 0.3 s (half the run time on small images).
        # Freezing what exists now leaves only the workflow's own objects to collect.
        gc.collect()
        gc.freeze()
        # One process: images run one after the other, so that an interrupted run
        # loses at most the image in progress. Otherwise batches of a few images per
        # process: Nipype's scheduler walks the whole graph at every step, so one graph
        # of 100 images (2,700 nodes) kept the main process busy for longer than the
        # work itself; batches keep graphs small and finished images on disk early.
        size = (1 if plugin == "Linear" else len(todo) if plugin.lower() in CLUSTER_PLUGINS
                else max(2, BATCH_PER_PROCESS * config.nprocs))
        batches = [todo[i:i + size] for i in range(0, len(todo), size)]
        LOGGER.info("Processing %d T1w image(s) with Nipype (%s); work folder %s",
                    len(todo), plugin, base)
        for batch in batches:
            # Re-freeze before every batch: what earlier batches left alive (graphs,
            # results) would otherwise be scanned by each of MultiProc's collections,
            # and the scheduler's share of a core grew with the number of images done
            # (measured: 80 % of a core after 170 of 400 images).
            gc.collect()
            gc.freeze()
            wf = init_participant_wf(
                inputs=batch, output_dir=config.output_dir, bids_dir=config.bids_dir,
                template=template, resolution=config.resolution,
                registration=config.registration, sloppy=config.sloppy,
                omp_nthreads=config.threads_per_process, scoring=scoring,
                seed=config.seed, check_plausibility=not config.skip_plausibility_checks,
                skull_strip=config.skull_strip_t1w,
                skull_strip_method=config.skull_strip_method)
            wf.base_dir = str(base)
            try:
                args = {**plugin_args, "status_callback": progress}
                wf.run(plugin=plugin_runner(plugin, args), plugin_args=args)
            except RuntimeError as err:
                LOGGER.debug("Nipype reported failures: %s", err)
                if config.stop_on_first_crash:
                    break
            finally:
                if config.clean_workdir:
                    _clean_work(Path(wf.base_dir) / wf.name, batch, config, template.name,
                                scoring)
        for t1w in todo:
            if not is_complete(config, t1w, template.name, scoring):
                failures[t1w.key] = _crash_message(crash_dir, branch_name(t1w), started)
    from bgs_app.reports.participant import write_participant_reports

    subjects = sorted({t.subject for t in inputs} | {k[4:] for k in unselected})
    # A participant all of whose images were skipped as complete keeps its report.
    changed = {t.subject for t in todo} | {k[4:] for k in unselected}
    stale = [s for s in subjects
             if s in changed or not (config.output_dir / f"sub-{s}.html").is_file()]
    if len(stale) < len(subjects):
        LOGGER.info("Reports of %d unchanged participant(s) kept",
                    len(subjects) - len(stale))
    write_participant_reports(config.output_dir, stale, template,
                              {**failures, **unselected}, nprocs=config.nprocs)
    ok = len(inputs) - len(failures)
    LOGGER.info("Participant level finished in %.0f s: %d of %d image(s) succeeded "
                "(%d skipped as complete)", time.time() - started, ok, len(inputs), len(done))
    if failures or unselected:
        summary = "\n".join(f"  {key}: {msg}" for key, msg in {**unselected,
                                                                **failures}.items())
        LOGGER.error("%d image(s) failed%s:\n%s", len(failures),
                     f" and {len(unselected)} requested participant(s) had no T1w image"
                     if unselected else "", summary)
        return EXIT_FAILURE
    return EXIT_SUCCESS


def _clean_work(folder: Path, batch: list[T1wInput], config: Config, template: str,
                scoring) -> None:
    """``--clean-workdir``: remove the work folder of every image whose outputs are complete."""
    removed = 0
    for t1w in batch:
        work = folder / f"single_t1w_{branch_name(t1w)}"
        if work.is_dir() and is_complete(config, t1w, template, scoring):
            shutil.rmtree(work, ignore_errors=True)
            removed += 1
    if removed:
        LOGGER.info("--clean-workdir: removed the work folders of %d finished image(s)",
                    removed)


class _Progress:
    """Nipype status callback: one line per finished or failed image."""

    def __init__(self, todo: list[T1wInput]):
        self.names = {branch_name(t): t.key for t in todo}
        self.total = len(todo)
        self.done = 0
        self.failed: set[str] = set()

    def _branch(self, node) -> str | None:
        for part in str(node.fullname).split("."):
            if part.startswith("single_t1w_"):
                return self.names.get(part[len("single_t1w_"):])
        return None

    def __call__(self, node, status):
        key = self._branch(node)
        if key is None:
            return
        if status == "end" and node.name == "completion_record":
            self.done += 1
            LOGGER.info("%s: finished (%d of %d)", key, self.done, self.total)
        elif status == "exception" and key not in self.failed:
            self.failed.add(key)
            LOGGER.warning("%s: failed at step %s", key, node.name)


def _plugin(config: Config, n_images: int = 1) -> tuple[str, dict]:
    """The Nipype plugin and its arguments (``--use-plugin``, else by ``--nprocs``).

    MultiProc gets at most as many processes as this process may use CPUs, and no more
    than a few per image (one image has at most three steps that can run at once).
    """
    if config.use_plugin is not None:
        from bgs_app.config import read_config_file

        spec = read_config_file(config.use_plugin)
        plugin = spec.get("plugin")
        if not plugin:
            from bgs_app.errors import UsageError

            raise UsageError(f"{config.use_plugin}: needs a 'plugin' key (e.g. SLURM, SGE, "
                             "MultiProc) and optional 'plugin_args'")
        if str(plugin).lower() in GRAPH_PLUGINS:
            from bgs_app.errors import UsageError

            raise UsageError(
                f"{config.use_plugin}: the {plugin} plugin submits the whole graph and "
                "returns before any image is processed, so bgs_app cannot report which "
                "images failed; use its job-per-node form (e.g. SLURM instead of "
                "SLURMGraph) or a job array with one participant per task (docs: clusters)")
        return str(plugin), dict(spec.get("plugin_args", {}))
    n_procs = min(config.nprocs, usable_cpus(), 3 * max(1, n_images))
    if n_procs == 1:
        return "Linear", {}
    args = {"n_procs": n_procs, "raise_insufficient": False}
    if config.mem_gb:
        args["memory_gb"] = config.mem_gb
    return "MultiProc", args


def _worker_initializer(cwd: str, parent_pid: int | None) -> None:
    from nipype.pipeline.plugins.multiproc import process_initializer

    die_with_parent(parent_pid)
    process_initializer(cwd)


class BgsMultiProcPlugin(MultiProcPlugin):
    """Nipype's MultiProc whose workers die with the main process.

    After ``kill -9`` of the main process, MultiProc's workers would wait for work for
    ever (they hold both ends of their task pipe). Here each asks the kernel to kill it
    when its parent dies (:func:`bgs_app.utils.processes.die_with_parent`). The start
    method is Nipype's (``mp_context`` in the plugin arguments; fork by default on
    Linux): the main process never starts torch (model bundles are read without it),
    so forked workers can use torch's thread pool.
    """

    def __init__(self, plugin_args=None):
        super().__init__(plugin_args=plugin_args)
        # No worker has started yet (they start at the first submission): replace the
        # pool by one whose workers run our initializer.
        self.pool.shutdown(wait=False)
        context = mp.get_context(self.plugin_args.get("mp_context"))
        # A forkserver's workers are the server's children, not ours: the kernel then
        # kills them with the server, which ends with this process.
        parent = os.getpid() if context.get_start_method() in ("fork", "spawn") else None
        self.pool = ProcessPoolExecutor(
            max_workers=self.processors, initializer=_worker_initializer,
            initargs=(self._cwd, parent), mp_context=context)


def plugin_runner(name: str, args: dict):
    """What ``Workflow.run(plugin=...)`` gets: our MultiProc, else the plugin's name."""
    if name == "MultiProc":
        return BgsMultiProcPlugin(plugin_args=args)
    return name
