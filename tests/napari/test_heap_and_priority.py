"""The viewer's garbage collections stay short (the long-lived heap frozen, thawed so that nothing
leaks) and the workers compute at a lower CPU priority than the viewer."""

from __future__ import annotations

import gc
import os
import sys
import threading
import weakref

import numpy as np
import pytest

pytest.importorskip("napari")


@pytest.fixture
def heap(monkeypatch):
    from napari_scr2st._napari import _heap

    monkeypatch.setenv(_heap.FREEZE_ENV, "1")
    _heap.thaw()
    yield _heap
    _heap.thaw()


class _Cycle:
    def __init__(self) -> None:
        self.me = self  # only the cyclic collector frees it


def test_freeze_moves_the_heap_out_of_the_collections_and_removal_thaws(make_napari_viewer, heap, qtbot):
    viewer = make_napari_viewer()
    before = viewer.add_points(np.zeros((3, 2)), name="before")
    old = [_Cycle()]
    ref_old = weakref.ref(old[0])
    assert heap.freeze(viewer) and heap.is_frozen()
    frozen = gc.get_freeze_count()
    assert frozen > 1000  # the modules, classes and the viewer
    assert not heap.freeze_later(viewer)  # frozen already
    new = _Cycle()
    ref_new = weakref.ref(new)
    del new, old[0]
    gc.collect()
    assert ref_new() is None  # made after the freeze: collected as usual
    assert ref_old() is not None  # frozen: kept until the heap thaws
    keep = [_Cycle() for _ in range(100)]
    assert heap.freeze(viewer) and gc.get_freeze_count() >= frozen + 100  # adds what was made since
    assert heap.freeze_later(viewer, 10, again=True) and not heap.freeze_later(viewer, 10, again=True)  # one pending
    qtbot.wait(50)
    del keep
    after = viewer.add_points(np.ones((3, 2)), name="after")
    viewer.layers.remove(after)
    assert heap.is_frozen()  # made after the freeze: removing it keeps the heap frozen
    viewer.layers.remove(before)
    assert not heap.is_frozen() and gc.get_freeze_count() == 0  # alive at the freeze: thawed
    gc.collect()
    assert ref_old() is None  # what became garbage while frozen is freed now
    qtbot.waitUntil(heap.is_frozen, timeout=heap.REFREEZE_MS + 5_000)  # and it freezes again


def test_closing_the_window_thaws(make_napari_viewer, heap):
    viewer = make_napari_viewer()
    assert heap.freeze(viewer)
    viewer.close()
    assert not heap.is_frozen() and gc.get_freeze_count() == 0


def test_switched_off_or_off_the_main_thread_nothing_is_frozen(make_napari_viewer, heap, monkeypatch):
    viewer = make_napari_viewer()
    out = []
    t = threading.Thread(target=lambda: out.append(heap.freeze(viewer)))
    t.start()
    t.join()
    assert out == [False] and gc.get_freeze_count() == 0
    monkeypatch.setenv(heap.FREEZE_ENV, "0")
    assert not heap.freeze(viewer) and not heap.freeze_later(viewer)
    assert gc.get_freeze_count() == 0


def test_opening_data_freezes_the_heap_soon_after(make_napari_viewer, heap, qtbot, monkeypatch):
    monkeypatch.delenv("SCR2ST_SYNC_WORKERS", raising=False)
    monkeypatch.setenv("SCR2ST_SAMPLE_SPOTS", "300")
    monkeypatch.setattr(heap, "DELAY_MS", 50)
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-scr2st", "synthetic")
    qtbot.waitUntil(lambda: "SYN1 spots" in viewer.layers, timeout=120_000)
    qtbot.waitUntil(heap.is_frozen, timeout=10_000)
    assert gc.get_freeze_count() > 1000
    viewer.layers.remove("SYN1 true compartments")  # shown before the freeze: the heap thaws
    assert not heap.is_frozen()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")
def test_workers_run_at_a_lower_cpu_priority(make_napari_viewer, qtbot, monkeypatch):
    from napari_scr2st._napari import _workers as W
    from napari_scr2st.progress import Progress

    monkeypatch.delenv("SCR2ST_SYNC_WORKERS", raising=False)
    monkeypatch.delenv(W.NICE_ENV, raising=False)
    make_napari_viewer()
    seen = {}

    def gen():
        seen["thread"] = threading.current_thread() is threading.main_thread()
        seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        yield Progress(1, 1, "done")
        return 1

    done = []
    W.start_worker(gen, desc="nice", quiet=True, on_done=done.append)
    qtbot.waitUntil(lambda: done == [1], timeout=20_000)
    base = os.getpriority(os.PRIO_PROCESS, os.getpid())
    assert seen["thread"] is False and seen["nice"] >= min(19, base + W.WORKER_NICE)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base  # the UI thread keeps its own
    assert not W.lower_thread_priority()  # nothing on the main thread


def test_worker_niceness_setting(monkeypatch):
    from napari_scr2st._napari import _workers as W

    monkeypatch.setenv(W.NICE_ENV, "0")
    assert W.worker_nice() == 0
    out = []
    t = threading.Thread(target=lambda: out.append(W.lower_thread_priority()))
    t.start()
    t.join()
    assert out == [False]
    monkeypatch.setenv(W.NICE_ENV, "40")
    assert W.worker_nice() == 19
    monkeypatch.setenv(W.NICE_ENV, "high")
    assert W.worker_nice() == W.WORKER_NICE
