"""The house's rules, held by a tool: import-linter contracts (``.importlinter``).

The contracts pass on the package, and each one breaks when the import it forbids is
added to a copy of the package; importing the group level (and running apply mode) never
imports Nipype.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).parent / "lint-imports"
pytestmark = pytest.mark.skipif(not LINT.is_file(), reason="import-linter is not installed "
                                                           "(pip install '.[test]')")


def _lint(root: Path, cwd: Path) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(LINT), "--config", str(ROOT / ".importlinter"), "--no-cache"],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_package_keeps_every_contract(tmp_path):
    result = _lint(ROOT, tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def _contract_names() -> dict[str, str]:
    parser = configparser.ConfigParser()
    parser.read(ROOT / ".importlinter")
    return {section.split(":")[-1]: parser[section]["name"] for section in parser.sections()
            if section.startswith("importlinter:contract:")}


#: contract -> (module file, an import that contract forbids there)
VIOLATIONS = {
    "layers": ("bgs_app/stats/metrics.py", "import bgs_app.group.inputs"),
    "model-without-nipype": ("bgs_app/model/network.py", "import nipype"),
    "tables-without-model": ("bgs_app/genetics/qc.py", "import bgs_app.model.network"),
    "simulator-apart": ("bgs_app/simulate/deform.py", "import bgs_app.model.saliency"),
    "cli-on-top": ("bgs_app/interfaces/io.py", "import bgs_app.cli.parser"),
    "workflows-without-group": ("bgs_app/workflows/scores.py", "import bgs_app.group.saliency"),
    "group-without-nipype": ("bgs_app/group/scores.py", "import nipype"),
    "reports-without-stages": ("bgs_app/reports/figures.py", "import bgs_app.group.stage"),
    "contracts-stand-alone": ("bgs_app/grid.py", "import torch"),
    "stages-not-orchestrator": ("bgs_app/group/split.py",
                                "from bgs_app.group import run_group_level"),
    "no-cycles": ("bgs_app/group/stage.py", "import bgs_app.group.training"),
}


def test_every_contract_is_exercised():
    assert set(VIOLATIONS) == set(_contract_names())


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("copy")
    shutil.copytree(ROOT / "bgs_app", root / "bgs_app",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return root


@pytest.mark.parametrize("contract", sorted(VIOLATIONS))
def test_each_contract_breaks_on_the_import_it_forbids(package_copy, tmp_path, contract):
    relative, line = VIOLATIONS[contract]
    target = package_copy / relative
    original = target.read_text()
    target.write_text(original + f"\n{line}  # added by the test\n")
    try:
        result = _lint(package_copy, tmp_path)
    finally:
        target.write_text(original)
    name = _contract_names()[contract]
    assert result.returncode != 0, result.stdout[-3000:]
    assert f"{name} BROKEN" in result.stdout, result.stdout[-3000:]
    broken = [ln for ln in result.stdout.splitlines() if ln.endswith(" BROKEN")]
    assert len(broken) >= 1


def test_importing_the_group_level_imports_no_nipype():
    code = ("import sys, bgs_app.group, bgs_app.group.apply, bgs_app.group.training; "
            "assert 'nipype' not in sys.modules, 'nipype was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_apply_mode_runs_without_nipype(tmp_path):
    """A whole apply-mode run (scores, maps, associations, report) in a process that never
    imports Nipype."""
    import torch

    from bgs_app.grid import grid_metadata
    from bgs_app.model.bundle import save_bundle
    from bgs_app.model.network import SFCN
    from bgs_app.simulate import SimulationParams, simulate_study
    from bgs_app.simulate.oracle import truth_model_grid

    study = tmp_path / "study"
    simulate_study(study, SimulationParams(n_subjects=6, seed=4, resolution=4.0), nprocs=2,
                   progress=False)
    out = truth_model_grid(study, tmp_path / "out", 4.0, nprocs=2)
    torch.manual_seed(0)
    bundle = save_bundle(SFCN(2, channels=(4, 4, 4, 4, 4, 4)).eval(), tmp_path / "bundle",
                         snps=["sim01", "sim02"], counted_alleles={},
                         grid=grid_metadata(4.0, "MNI152NLin2009aSym"))
    argv = [str(study), str(out), "group", "--model", str(bundle), "--resolution", "4",
            "--saliency-method", "gradient", "--skip-bids-validation", "-w",
            str(tmp_path / "work"), "--phenotypes", "fluid_intelligence"]
    code = ("import sys\nfrom bgs_app.cli.run import main\n"
            f"code = main({argv!r})\n"
            "assert code == 0, code\n"
            "assert 'nipype' not in sys.modules, 'nipype was imported'\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "group" / "scores.tsv").is_file() and (out / "group/report.html").is_file()
