"""Writing derivatives: copy a file to its BIDS name atomically, with its JSON sidecar."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from bgs_app.utils.atomic import atomic_path, write_json


def sink(in_file, out_path, metadata: dict | None = None) -> str:
    """Copy ``in_file`` to ``out_path`` atomically; write ``metadata`` as its sidecar.

    A JSON file beside ``in_file`` with the same stem (a table's column descriptions)
    is merged into the sidecar.
    """
    out_path = Path(out_path)
    beside = Path(in_file).with_name(Path(in_file).name.split(".")[0] + ".json")
    if beside.is_file():
        metadata = {**json.loads(beside.read_text()), **(metadata or {})}
    with atomic_path(out_path) as tmp:
        shutil.copyfile(in_file, tmp)
    if metadata:
        sidecar = out_path.with_name(out_path.name.split(".")[0] + ".json")
        write_json(sidecar, metadata)
    return str(out_path)


class _SinkInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True)
    out_path = traits.Str(mandatory=True, desc="final path of the derivative")
    metadata = traits.Dict(desc="JSON sidecar content")


class _SinkOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class DerivativesSink(SimpleInterface):
    """Write one derivative (and its sidecar) under its BIDS name."""

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec

    def _run_interface(self, runtime):
        meta = dict(self.inputs.metadata) if self.inputs.metadata else None
        self._results["out_file"] = sink(self.inputs.in_file, self.inputs.out_path, meta)
        return runtime


class _StampInputSpec(BaseInterfaceInputSpec):
    outputs = InputMultiObject(File(exists=True), mandatory=True)
    record = traits.Str(mandatory=True, desc="path of the completion record")
    provenance = traits.Dict(mandatory=True)


class _StampOutputSpec(TraitedSpec):
    out_file = File(exists=True)


class CompletionRecord(SimpleInterface):
    """Record that every output of a branch was written (written last, atomically)."""

    input_spec = _StampInputSpec
    output_spec = _StampOutputSpec

    def _run_interface(self, runtime):
        record = dict(self.inputs.provenance)
        record["outputs"] = sorted(str(p) for p in self.inputs.outputs)
        self._results["out_file"] = str(write_json(self.inputs.record, record))
        return runtime


def read_record(path) -> dict | None:
    """A completion record, or None when absent or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None
