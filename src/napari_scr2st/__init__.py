"""napari-scr2st: choose which spatial-transcriptomics spots to sequence, predict the rest.

The public API (:mod:`napari_scr2st.api`), functions over AnnData in the scanpy style:
:func:`read`, :func:`embed`, :func:`fit_reference`, :func:`select` (returns an
:class:`AcquisitionSession`), :func:`import_counts`, :func:`train`, :func:`predict`,
:func:`evaluate`; the settings :class:`SamplingSettings` and :class:`TrainConfig`.

The core (``config``, ``progress``, ``data``, ``io``, ``features``, ``reference``,
``sampling``, ``model``, ``evaluation``, ``session``) imports without napari or Qt; the napari
plugin lives in ``napari_scr2st._napari`` and the ``scr2st`` command in ``napari_scr2st.cli``.
Importing this package loads none of them: the names above resolve on first use.
"""

from __future__ import annotations

__version__ = "0.1.0"

_API = ("read", "embed", "fit_reference", "select", "import_counts", "train", "predict", "evaluate",
        "AcquisitionSession", "SamplingSettings", "TrainConfig")

__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from . import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
