"""Repository contracts: the README's commands are the ones CI runs."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.strip() for b in blocks[:2] for line in b.strip().splitlines() if line.strip()]


def test_readme_has_two_setup_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert "scr2st demo" in cmds[0]
    assert "pytest" in cmds[1] and ".[dev]" in cmds[1]


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    test_cmd = _readme_commands()[1]
    assert test_cmd in [line.strip() for line in ci], f"{test_cmd!r} not in .ci/run"
    assert "xvfb" in (ROOT / ".ci" / "run").read_text()


def test_ruff_is_clean():
    """``ruff check src tests benchmarks scripts`` passes with the project's rules (pyproject)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the dev extra)")
    out = subprocess.run([ruff, "check", "src", "tests", "benchmarks", "scripts"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
