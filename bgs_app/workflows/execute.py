"""Running the participant workflow: plugins, resuming, failures, summary, reports."""

from __future__ import annotations

import gc
import logging
import os
import re
import time
from pathlib import Path

from bgs_app.bids import T1wInput
from bgs_app.config import Config
from bgs_app.errors import EXIT_FAILURE, EXIT_SUCCESS
from bgs_app.interfaces.io import read_record
from bgs_app.utils.hashing import file_sha256
from bgs_app.workflows.base import (
    branch_name,
    expected_outputs,
    init_participant_wf,
    record_path,
)
from bgs_app.workflows.scores import ScoringOptions

LOGGER = logging.getLogger("bgs_app")
#: Images per Nipype graph and process (see run_participant_workflow).
BATCH_PER_PROCESS = 4


def settings_of(config: Config, template_name: str,
                scoring: ScoringOptions | None = None) -> dict:
    """The settings a branch's outputs depend on (recorded in its completion record)."""
    return {"template": template_name, "resolution": config.resolution,
            "registration": config.registration, "sloppy": config.sloppy,
            **(scoring.settings() if scoring is not None else {})}


def scoring_options(config: Config, template_name: str) -> ScoringOptions | None:
    """The ``--model`` settings, after checking the bundle against the grid and template."""
    if config.model is None:
        return None
    from bgs_app.interfaces.modelgrid import grid_metadata
    from bgs_app.model.bundle import load_bundle

    _, meta = load_bundle(config.model, expect_grid=grid_metadata(config.resolution,
                                                                  template_name))
    method = None if config.no_saliency else (config.saliency_method or "gradient")
    return ScoringOptions(model_dir=config.model, snps=tuple(s["snp"] for s in meta["snps"]),
                          weights_sha256=meta["weights_sha256"], saliency_method=method,
                          ig_steps=config.ig_steps, native=config.saliency_native)


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
    return record.get("input_sha256") == file_sha256(t1w.path)


def work_dir(config: Config) -> Path:
    """The Nipype work folder: ``-w``, else ``OUT_DIR/../work/bgs_app`` next to the output."""
    if config.work_dir is not None:
        return config.work_dir
    return config.output_dir.parent / "work" / f"bgs_app_{config.output_dir.name}"


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


def run_participant_workflow(config: Config, inputs: list[T1wInput]) -> int:
    """Build and run the participant workflow; report failures; return the exit code."""
    from nipype import config as ncfg
    from nipype import logging as nlogging

    from bgs_app.templates import get_template

    template = get_template(config.template, str(config.template_mask)
                            if config.template_mask else None)
    scoring = scoring_options(config, template.name)
    done = [t for t in inputs if is_complete(config, t, template.name, scoring)]
    todo = [t for t in inputs if t not in done]
    for t1w in done:
        LOGGER.info("%s: outputs complete and current; skipped", t1w.path.name)
    crash_dir = config.output_dir / "logs" / "crash"
    started = time.time()
    failures: dict[str, str] = {}
    if todo:
        base = work_dir(config)
        base.mkdir(parents=True, exist_ok=True)
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
        plugin, plugin_args = _plugin(config)
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
        size = 1 if plugin == "Linear" else max(2, BATCH_PER_PROCESS * config.nprocs)
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
                omp_nthreads=config.threads_per_process, scoring=scoring)
            wf.base_dir = str(base)
            try:
                wf.run(plugin=plugin, plugin_args={**plugin_args,
                                                   "status_callback": progress})
            except RuntimeError as err:
                LOGGER.debug("Nipype reported failures: %s", err)
                if config.stop_on_first_crash:
                    break
        for t1w in todo:
            if not is_complete(config, t1w, template.name, scoring):
                failures[t1w.key] = _crash_message(crash_dir, branch_name(t1w), started)
    from bgs_app.reports.participant import write_participant_reports

    write_participant_reports(config.output_dir, sorted({t.subject for t in inputs}),
                              template.name, failures, nprocs=config.nprocs)
    ok = len(inputs) - len(failures)
    LOGGER.info("Participant level finished in %.0f s: %d of %d image(s) succeeded "
                "(%d skipped as complete)", time.time() - started, ok, len(inputs), len(done))
    if failures:
        summary = "\n".join(f"  {key}: {msg}" for key, msg in failures.items())
        LOGGER.error("%d image(s) failed:\n%s", len(failures), summary)
        return EXIT_FAILURE
    return EXIT_SUCCESS


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


def _plugin(config: Config) -> tuple[str, dict]:
    if config.use_plugin is not None:
        from bgs_app.config import read_config_file

        spec = read_config_file(config.use_plugin)
        plugin = spec.get("plugin")
        if not plugin:
            from bgs_app.errors import UsageError

            raise UsageError(f"{config.use_plugin}: needs a 'plugin' key (e.g. SLURM, SGE, "
                             "MultiProc) and optional 'plugin_args'")
        return str(plugin), dict(spec.get("plugin_args", {}))
    if config.nprocs == 1:
        return "Linear", {}
    args = {"n_procs": config.nprocs, "raise_insufficient": False}
    if config.mem_gb:
        args["memory_gb"] = config.mem_gb
    return "MultiProc", args
