"""triton_blocked: Triton is hidden from torch only inside the block, and the plugin's import
changes nothing process-wide (checked in fresh interpreters with Mesa's libLLVM mapped)."""

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from napari_scr2st import torch_runtime
from napari_scr2st.torch_runtime import triton_blocked

_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib")


def _libllvm() -> str | None:
    for d in _LIB_DIRS:
        found = sorted(Path(d).glob("libLLVM*.so*")) if Path(d).is_dir() else []
        if found:
            return str(found[0])
    return None


def _run(code: str, lib: str | None) -> str:
    """Run ``code`` in a fresh interpreter, after mapping ``lib`` (Mesa's LLVM) when given."""
    prelude = f"import ctypes; ctypes.CDLL({lib!r})\n" if lib else ""
    out = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def test_importing_the_plugin_leaves_triton_alone():
    lib = _libllvm()  # with Mesa's LLVM mapped the old import-time guard blocked Triton for everyone
    out = _run(
        """
        import sys
        before = repr(sys.modules.get("triton", "absent"))
        import napari_scr2st._napari, napari_scr2st._napari._reader, napari_scr2st._napari._sample_data
        print("SAME", before == repr(sys.modules.get("triton", "absent")), before)
        """,
        lib,
    )
    assert "SAME True" in out, out


def test_block_is_lifted_on_exit_with_libllvm_mapped():
    lib = _libllvm()
    if lib is None:
        pytest.skip("no libLLVM shared library on this machine to map")
    out = _run(
        """
        import sys
        from napari_scr2st.torch_runtime import mesa_llvm_mapped, triton_blocked
        assert mesa_llvm_mapped()
        with triton_blocked() as blocked:
            try:
                import triton  # noqa: F401
                inside = "imported"
            except ImportError:
                inside = "ImportError"
        print("BLOCKED", blocked, inside, "AFTER", repr(sys.modules.get("triton", "absent")))
        """,
        lib,
    )
    assert "BLOCKED True ImportError AFTER 'absent'" in out, out


@pytest.mark.slow
def test_optimiser_made_after_the_block_does_not_load_triton():
    """torch._dynamo imported inside the block: later optimisers never import Triton."""
    lib = _libllvm()
    if lib is None:
        pytest.skip("no libLLVM shared library on this machine to map")
    out = _run(
        """
        import sys
        import torch
        from napari_scr2st.torch_runtime import triton_blocked
        with triton_blocked() as blocked:
            import torch._dynamo  # noqa: F401
        p = torch.nn.Parameter(torch.zeros(3))
        opt = torch.optim.AdamW([p], lr=0.1)
        p.grad = torch.ones(3)
        opt.step()
        print("BLOCKED", blocked, "TRITON", "triton" in sys.modules, "STEP", float(p[0]) < 0)
        """,
        lib,
    )
    assert "BLOCKED True TRITON False STEP True" in out, out


def test_context_manager_restores_sys_modules(monkeypatch):
    monkeypatch.setattr(torch_runtime, "mesa_llvm_mapped", lambda: True)
    monkeypatch.delitem(sys.modules, "triton", raising=False)
    with pytest.raises(RuntimeError), triton_blocked() as blocked:
        assert blocked and sys.modules["triton"] is None
        raise RuntimeError("torch work failed")
    assert "triton" not in sys.modules

    monkeypatch.setattr(torch_runtime, "mesa_llvm_mapped", lambda: False)
    with triton_blocked() as blocked:
        assert not blocked and "triton" not in sys.modules
    assert "triton" not in sys.modules


def test_an_existing_triton_entry_is_left_untouched(monkeypatch):
    monkeypatch.setattr(torch_runtime, "mesa_llvm_mapped", lambda: True)
    sentinel = object()
    monkeypatch.setitem(sys.modules, "triton", sentinel)
    with triton_blocked() as blocked:
        assert blocked is False and sys.modules["triton"] is sentinel
    assert sys.modules["triton"] is sentinel
    monkeypatch.setitem(sys.modules, "triton", None)  # blocked by someone else: stays blocked
    with triton_blocked() as blocked:
        assert blocked is True
    assert sys.modules["triton"] is None
