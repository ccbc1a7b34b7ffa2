"""Loading torch's optimiser stack safely in a process whose OpenGL is Mesa's llvmpipe.

Creating a ``torch.optim`` optimiser imports ``torch._dynamo``, which imports ``triton`` when it
is installed. Triton's bundled LLVM (``libtriton.so``) segfaults when it is loaded into a process
that already maps Mesa's ``libLLVM`` (software OpenGL: napari under Xvfb, virtual machines,
machines without a GPU driver); optimiser creation after ``napari.Viewer(show=True)`` crashes
there, and works with Triton blocked. Nothing in this package uses ``torch.compile``, so torch
only needs to see Triton as absent while ``torch._dynamo`` is first imported.

:func:`triton_blocked` does that for the duration of one ``with`` block and nothing longer, so
other plugins in the same napari process keep their own view of ``import triton``::

    from napari_scr2st.torch_runtime import triton_blocked

    with triton_blocked():
        import torch._dynamo  # noqa: F401  (or: optimizer = torch.optim.AdamW(...))

Once ``torch._dynamo`` is imported inside the block, later optimiser creation and ``step()`` do
not import Triton again, so the block is needed once per process, before the first optimiser.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

_MAPS = "/proc/self/maps"


def mesa_llvm_mapped() -> bool:
    """True when a ``libLLVM`` shared library is mapped into this process (Linux only)."""
    try:
        with open(_MAPS) as fh:
            return any("libLLVM" in line for line in fh)
    except OSError:  # no /proc: not Linux
        return False


@contextlib.contextmanager
def triton_blocked() -> Iterator[bool]:
    """Make ``import triton`` raise ImportError inside the block when Triton would crash.

    Blocks only when Mesa's ``libLLVM`` is mapped and ``triton`` is not yet in ``sys.modules``;
    yields True when it blocked. On exit the ``sys.modules["triton"] = None`` entry it set is
    removed, so ``sys.modules`` is as before the block except for the modules imported inside it.
    An earlier state of ``sys.modules["triton"]`` (loaded, or blocked by someone else) is left
    untouched, and then the block yields whether Triton is blocked (``None`` entry).
    """
    if "triton" in sys.modules:
        yield sys.modules["triton"] is None
        return
    if not mesa_llvm_mapped():
        yield False
        return
    sys.modules["triton"] = None  # import triton -> ImportError, torch treats it as absent
    try:
        yield True
    finally:
        if sys.modules.get("triton", False) is None:
            del sys.modules["triton"]
