"""Sphinx configuration of the bgs_app documentation (``make docs``)."""

from __future__ import annotations

import importlib
import os
import sys

from docutils import nodes
from docutils.parsers.rst import Directive, directives
from docutils.statemachine import StringList

sys.path.insert(0, os.path.abspath(".."))
sys.path.insert(0, os.path.abspath("_ext"))
os.environ.setdefault("MPLBACKEND", "Agg")

from bgs_app import __version__  # noqa: E402

project = "bgs_app"
author = "bgs_app developers"
copyright = "the bgs_app developers"  # noqa: A001 - Sphinx's name
version = __version__
release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "numpydoc",
    "sphinxarg.ext",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_enable_extensions = ["colon_fence"]
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_theme = "alabaster"
html_static_path: list[str] = []
html_title = f"bgs_app {release}"

autodoc_member_order = "bysource"
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set[str] = set()


class BgsColumns(Directive):
    """``.. bgs-columns:: module:NAME`` — a table of the columns a sidecar dict describes.

    The descriptions come from the dictionaries that also write the JSON sidecars, so the
    documentation cannot drift from the files. ``NAME`` may be a dict of column → text
    or column → {"Description": ..., "Units": ...}, or a function returning one from the
    column names given in ``:columns:``.
    """

    required_arguments = 1
    option_spec = {"columns": directives.unchanged}

    def run(self):
        module, _, attr = self.arguments[0].partition(":")
        value = getattr(importlib.import_module(module), attr)
        if callable(value):
            value = value(self.options.get("columns", "").split())
        rows = []
        for column, text in value.items():
            if isinstance(text, dict):
                if "Description" not in text:
                    continue  # metadata, not a column
                units = f" ({text['Units']})" if text.get("Units") else ""
                text = text["Description"] + units
            rows.append((column, str(text)))
        lines = [".. list-table::", "   :header-rows: 1", "   :widths: 25 75", "",
                 "   * - column", "     - description"]
        for column, text in rows:
            lines += [f"   * - ``{column}``", f"     - {text}"]
        node = nodes.container()
        self.state.nested_parse(StringList(lines, source="bgs-columns"), self.content_offset,
                                node)
        return node.children


def _is_header(lines: list[str], i: int) -> bool:
    underline = lines[i + 1].strip() if i + 1 < len(lines) else ""
    return bool(lines[i].strip()) and len(underline) >= 3 and set(underline) == {"-"}


def nipype_sections(app, what, name, obj, options, lines):
    """Keep the NiPreps ``Inputs``/``Outputs`` docstring sections of workflow factories.

    numpydoc drops sections it does not know. Before it parses the docstring (this hook
    runs first), each such section becomes a rubric with a definition list, moved in
    front of the first numpydoc section (into the extended summary).
    """
    kept, moved, i = [], [], 0
    while i < len(lines):
        if lines[i].strip() in ("Inputs", "Outputs") and _is_header(lines, i):
            block, j = [], i + 2
            while j < len(lines) and not _is_header(lines, j):
                block.append(lines[j])
                j += 1
            moved += [f".. rubric:: {lines[i].strip()}", "", *block, ""]
            i = j
        else:
            kept.append(lines[i])
            i += 1
    if not moved:
        return
    first = next((k for k in range(len(kept)) if _is_header(kept, k)), len(kept))
    lines[:] = kept[:first] + moved + kept[first:]


def setup(app):
    """Register the ``bgs-columns`` directive and the Inputs/Outputs hook."""
    app.add_directive("bgs-columns", BgsColumns)
    app.connect("autodoc-process-docstring", nipype_sections, priority=400)
    return {"parallel_read_safe": True}
