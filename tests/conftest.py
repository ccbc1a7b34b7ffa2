"""Shared pytest fixtures.

``shared_data``: the real data folder ``../shared/data`` beside the repository root (see
``shared/data/README.md``). Tests that need it skip, with a clear message, only when the
folder is absent (CI always has it).

``sample`` / ``space``: the 300-spot synthetic sample (seed 0) and its fitted reference space,
once per test module (the session tests share them; a module may define its own).
"""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path of the shared real-data folder; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real test data not found at {SHARED_DATA.resolve()} (expected ../shared/data beside the repository)"
        )
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session", autouse=True)
def _isolated_embedding_cache(tmp_path_factory):
    """Tests never write to the user's embedding cache: one temporary cache per test session
    (shared by the tests, so an embedding computed once is reused, as in real use)."""
    import os

    old = os.environ.get("SCR2ST_CACHE_DIR")
    os.environ["SCR2ST_CACHE_DIR"] = str(tmp_path_factory.mktemp("scr2st-cache"))
    yield
    if old is None:
        os.environ.pop("SCR2ST_CACHE_DIR", None)
    else:
        os.environ["SCR2ST_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def sample():
    from napari_scr2st.data import make_sample

    return make_sample(n_spots=300, seed=0)


@pytest.fixture(scope="module")
def space(sample):
    from napari_scr2st.session import fit_reference_space

    return fit_reference_space(sample.reference, list(map(str, sample.section.var_names)))
