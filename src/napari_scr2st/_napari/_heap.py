"""Short garbage collections in the viewer: the long-lived heap is frozen (:func:`gc.freeze`).

With napari, torch and scanpy loaded a process tracks ~750,000 objects, and one full
collection walks all of them: ~260 ms on a 2-core machine, during which no thread runs (it holds
the GIL). napari runs one at every layer removal, and Python runs them on its own while a worker
allocates. Almost all of those objects live as long as the process (modules, classes, the
viewer's widgets), so the plugin moves them to the permanent generation once the data is shown;
later collections only walk what was made since.

Nothing is lost: objects that were frozen and later become garbage are only freed after a
:func:`thaw`, so the heap is thawed when a layer that was alive at the freeze is removed (and
frozen again :data:`REFREEZE_MS` later, after one full collection: what napari's removal alone
costs), and when the viewer's window closes. A dock closed while the heap is frozen is freed
at the next thaw. ``SCR2ST_GC_FREEZE=0`` turns it off.
"""

from __future__ import annotations

import functools
import gc
import threading
import weakref

from ..config import env_flag

FREEZE_ENV = "SCR2ST_GC_FREEZE"
DELAY_MS = 500  # after the layers are shown: the one full collection is not added to their paint
REFREEZE_MS = 2000  # after a removal thawed the heap

_FROZEN_LAYERS: weakref.WeakSet = weakref.WeakSet()
_WATCHED: weakref.WeakSet = weakref.WeakSet()  # viewers whose removals and close are followed
_state = {"frozen": False, "scheduled": False}


def enabled() -> bool:
    return env_flag(FREEZE_ENV, True)


def is_frozen() -> bool:
    return _state["frozen"]


def freeze(viewer=None) -> bool:
    """Collect, then freeze the heap (nothing if the switch is off or not on the main thread).
    On a frozen heap this adds what was made since (its collection walks only that), so after a
    large step (a section prepared, a model trained) the next collections stay short too.
    ``viewer``: its layers now count as frozen (removing one thaws), and its window's close
    thaws. Returns whether it froze."""
    if not enabled() or threading.current_thread() is not threading.main_thread():
        return False
    if viewer is not None:
        _watch(viewer)
    gc.collect()
    gc.freeze()
    _state["frozen"] = True
    for v in list(_WATCHED):
        for ly in list(getattr(v, "layers", [])):
            _FROZEN_LAYERS.add(ly)
    return True


def thaw() -> bool:
    """Move the frozen heap back to the oldest generation (the next full collection frees what
    became garbage meanwhile). Returns whether it was frozen."""
    if not _state["frozen"]:
        return False
    gc.unfreeze()
    _state["frozen"] = False
    _FROZEN_LAYERS.clear()
    return True


def freeze_later(viewer, delay_ms: int = DELAY_MS, *, again: bool = False) -> bool:
    """:func:`freeze` from the event loop ``delay_ms`` from now (one pending call at a time;
    ``again``: also when the heap is frozen already, to add what a large step made). Returns
    whether one was scheduled."""
    if (_state["frozen"] and not again) or _state["scheduled"] or not enabled():
        return False
    from qtpy.QtCore import QTimer

    _state["scheduled"] = True
    ref = weakref.ref(viewer)

    def _go() -> None:
        _state["scheduled"] = False
        v = ref()
        if v is not None and getattr(v.window, "_qt_window", None) is not None:
            freeze(v)

    QTimer.singleShot(delay_ms, _go)
    return True


def _watch(viewer) -> None:
    if viewer in _WATCHED:
        return
    _WATCHED.add(viewer)
    viewer.layers.events.removed.connect(_on_removed)
    qt_window = getattr(viewer.window, "_qt_window", None)
    if qt_window is not None:
        qt_window.installEventFilter(_close_filter())


def _on_removed(event) -> None:
    if event.value in _FROZEN_LAYERS and thaw():
        viewer = next((v for v in _WATCHED if v.layers is event.source), None)
        if viewer is not None:
            freeze_later(viewer, REFREEZE_MS)


@functools.cache
def _close_filter():
    """One Qt event filter that thaws when a watched viewer's window gets its close event."""
    from qtpy.QtCore import QEvent, QObject

    class _ThawOnClose(QObject):
        def eventFilter(self, _obj, ev):  # noqa: N802 - Qt's name
            if ev.type() == QEvent.Type.Close:
                thaw()
            return False

    return _ThawOnClose()
