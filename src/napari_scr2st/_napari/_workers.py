"""Core generators in napari thread workers, with a progress bar; notifications."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Generator
from typing import Any

from ..config import env_flag
from ..progress import Progress
from . import _dock_kit, _heap, _vispy_speedups

SYNC_ENV = "SCR2ST_SYNC_WORKERS"


def sync_workers() -> bool:
    """``SCR2ST_SYNC_WORKERS=1`` runs generators in the calling thread (tests), as stardist-napari."""
    return env_flag(SYNC_ENV, False)


class _NoBar:
    """A progress bar that shows nothing (background warm-ups)."""

    n = 0
    total = 0

    def update(self, k=1):
        self.n += k

    def set_description(self, _):
        pass

    def close(self):
        pass


BAR_AFTER_S = 0.4  # napari's activity bar only once the work has lasted this long
BAR_EVERY_S = 0.5  # and then updated at most this often


class LazyBar:
    """napari's progress bar in the activity dock, made only once the work has lasted
    :data:`BAR_AFTER_S` (a QTimer), with the progress so far, and then updated at most every
    :data:`BAR_EVERY_S` (the latest state always shows: a pending change is pushed by a timer).

    napari's bar runs ``QApplication.processEvents()`` when it is made (re-laying out the status
    bar: 30-180 ms on a software-rendered window, measured) and on every ``update`` and
    ``set_description``, so that whatever is pending (a canvas paint: 50-250 ms here) runs nested
    inside the handler that made the change: at the click that starts the work, and at every
    progress event of a worker. The dock's own panel (:class:`WorkerPanel`) shows the progress
    from the start either way."""

    def __init__(self, desc: str, after_s: float | None = None, every_s: float | None = None) -> None:
        self.bar = None
        self.n, self.total, self.desc = 0, 0, desc
        self.closed = False
        self.every_s = BAR_EVERY_S if every_s is None else every_s
        self._pushed_at = 0.0
        self._shown = (0, 0, desc)  # (n, total, desc) that the napari bar shows
        self._flush_due = False
        from qtpy.QtCore import QTimer

        QTimer.singleShot(int(1000 * (BAR_AFTER_S if after_s is None else after_s)), self._make)

    def _make(self) -> None:
        if self.closed or self.bar is not None:
            return
        from napari.utils import progress

        self.bar = progress(total=self.total, desc=self.desc)
        if self.n:
            self.bar.update(self.n)
        self._shown = (self.n, self.total, self.desc)
        self._pushed_at = time.perf_counter()

    def _changed(self) -> None:
        if self.bar is None or self.closed or self._flush_due:
            return
        wait = self.every_s - (time.perf_counter() - self._pushed_at)
        if wait <= 0:
            self._push()
            return
        self._flush_due = True
        from qtpy.QtCore import QTimer

        QTimer.singleShot(int(1000 * wait) + 1, self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self.bar is not None and not self.closed:
            self._push()

    def _push(self) -> None:
        n, total, desc = self._shown
        bar = self.bar
        if self.total != total:
            bar.total = self.total
        if self.n != n:
            bar.update(self.n - n)
        if self.desc != desc:
            bar.set_description(self.desc)
        self._shown = (self.n, self.total, self.desc)
        self._pushed_at = time.perf_counter()

    @property
    def total(self) -> int:
        return self._total

    @total.setter
    def total(self, value: int) -> None:
        self._total = value
        self._changed()

    def update(self, k: int = 1) -> None:
        self.n += k
        self._changed()

    def set_description(self, desc: str) -> None:
        self.desc = desc
        self._changed()

    def close(self) -> None:
        self.closed = True
        if self.bar is not None:
            self.bar.close()


class _SyncHandle:
    """What :func:`start_worker` returns in synchronous mode (same surface as a worker)."""

    is_running = False

    def quit(self) -> None:  # the token stops the synchronous driver
        pass

    def cancel(self) -> None:
        pass


def active(handle) -> bool:
    """True while a :func:`start_worker` handle's work is still to come or running (a thread
    worker is queued before ``is_running`` turns true; a synchronous one is over at once). The
    docks set their handle to None when the worker has finished."""
    return handle is not None and not isinstance(handle, _SyncHandle)


NICE_ENV = "SCR2ST_WORKER_NICE"
WORKER_NICE = 10  # how much lower than the viewer's the workers' CPU priority is (Linux)


def worker_nice() -> int:
    """The niceness added to a worker thread (``SCR2ST_WORKER_NICE``, default
    :data:`WORKER_NICE`; 0 keeps the workers at the viewer's priority)."""
    raw = os.environ.get(NICE_ENV, "").strip()
    try:
        return max(0, min(19, int(raw))) if raw else WORKER_NICE
    except ValueError:
        return WORKER_NICE


def lower_thread_priority(by: int | None = None) -> bool:
    """Give the calling (worker) thread a lower CPU priority than the viewer's, so that on a
    busy machine the UI thread and the OpenGL rasteriser get the cores first and a paint is
    not slowed down by the background computation. Linux only (its niceness is per thread);
    elsewhere, on the main thread or when the thread is already that nice, nothing. A thread of
    the pool stays nice for the next worker; it only ever runs background work. Returns
    whether the priority was changed."""
    import threading

    by = worker_nice() if by is None else by
    if by <= 0 or not sys.platform.startswith("linux") or threading.current_thread() is threading.main_thread():
        return False
    tid = threading.get_native_id()
    try:
        base = os.getpriority(os.PRIO_PROCESS, os.getpid())  # the process's (main thread's) niceness
        now = os.getpriority(os.PRIO_PROCESS, tid)
        want = min(19, base + by)
        if now >= want:
            return False
        os.setpriority(os.PRIO_PROCESS, tid, want)
    except OSError:  # a sandbox may forbid it: the worker runs at the normal priority
        return False
    return True


STATUS_EVERY_S = 0.2  # dock status texts follow progress events at most 5 times per second


class WorkerPanel:
    """A progress bar (done/total), a status line with the time left and a Cancel button for
    one dock's long work; hidden while nothing runs. Built lazily (``widget``) so that
    importing this module needs no QApplication."""

    def __init__(self) -> None:
        from qtpy.QtWidgets import (
            QHBoxLayout,
            QLabel,
            QProgressBar,
            QPushButton,
            QVBoxLayout,
            QWidget,
        )

        self.widget = QWidget()
        self.widget.setObjectName("SCR2STWorkerPanel")
        lay = QVBoxLayout(self.widget)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.bar = QProgressBar()
        self.bar.setTextVisible(True)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setToolTip("Stop at the next step; nothing changes in the layers or the section")
        row.addWidget(self.bar, 1)
        row.addWidget(self.cancel_btn)
        lay.addLayout(row)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        lay.addWidget(self.label)
        self.widget.setVisible(False)
        self._cancel: Callable[[], Any] | None = None
        self.cancel_btn.clicked.connect(self.cancel)
        self.desc = ""

    def _alive(self) -> bool:
        """False once the Qt widget is gone (its dock was closed); no ``destroyed`` slot (a Python
        slot on ``destroyed`` can crash PyQt during garbage collection)."""
        try:
            self.widget.objectName()
        except RuntimeError:
            return False
        return True

    def begin(self, desc: str, cancel: Callable[[], Any] | None) -> None:
        self.desc, self._cancel = desc, cancel
        if not self._alive():
            return
        self.bar.setRange(0, 0)  # busy until the first event with a total
        self.bar.setFormat("%v/%m")
        self.label.setText(f"{desc}: starting…")
        self.cancel_btn.setEnabled(cancel is not None)
        self.widget.setVisible(True)

    def show(self, ev: Progress, text: str) -> None:
        if not self._alive():  # its dock was closed: the work goes on without it
            return
        if ev.total:
            if self.bar.maximum() != ev.total:
                self.bar.setRange(0, int(ev.total))
            self.bar.setValue(int(min(ev.step, ev.total)))
        elif self.bar.maximum() != 0:
            self.bar.setRange(0, 0)
        self.label.setText(f"{self.desc}: {text}" if text else self.desc)

    def cancel(self) -> None:
        if self._cancel is not None and self._alive():
            self.label.setText(f"{self.desc}: cancelling…")
            self.cancel_btn.setEnabled(False)
            self._cancel()

    def end(self) -> None:
        self._cancel = None
        if self._alive():
            self.widget.setVisible(False)


def start_worker(
    gen_factory: Callable[[], Generator[Progress, None, Any]],
    *,
    desc: str,
    on_progress: Callable[[Progress], Any] | None = None,
    on_done: Callable[[Any], Any] | None = None,
    on_error: Callable[[BaseException], Any] | None = None,
    on_finished: Callable[[], Any] | None = None,
    on_aborted: Callable[[], Any] | None = None,
    quiet: bool = False,
    token=None,
    panel: WorkerPanel | None = None,
    status: Callable[[str], Any] | None = None,
):
    """Run a core generator in a napari thread worker with a progress bar in the activity dock.

    ``worker.quit()`` stops it at the next yield. Errors go to ``on_error`` (default: a napari
    error notification), never to a crash. With ``SCR2ST_SYNC_WORKERS=1`` the generator runs
    synchronously and the same callbacks fire.

    ``token`` (a :class:`~napari_scr2st.progress.CancelToken`): cancelling it also stops the
    generator at its next yield (then ``on_aborted`` runs, not ``on_done``). ``panel``: a
    :class:`WorkerPanel` showing done/total, the time left and a Cancel button while it runs.
    ``status``: called with ``message · done/total (pct) · about N s left`` as events come
    (at most every :data:`STATUS_EVERY_S`; never after a cancel). napari's activity bar shows
    only once the work has lasted :data:`BAR_AFTER_S`, updated at most every
    :data:`BAR_EVERY_S` (:class:`LazyBar`).
    """
    from ..progress import CancelToken, ProgressClock, drive

    token = token if token is not None else CancelToken()
    pbar = _NoBar() if quiet else LazyBar(desc)
    state = {"desc": "", "last": 0.0, "handle": None, "over": False}
    clock = ProgressClock()

    def _progress(ev: Progress) -> None:
        if ev.total and pbar.total != ev.total:
            pbar.total = ev.total
        if ev.step != pbar.n:  # a new phase counts from 0 again (a negative update)
            pbar.update(ev.step - pbar.n)
        if ev.message and ev.message != state["desc"]:
            state["desc"] = ev.message
            pbar.set_description(f"{desc}: {ev.message}")
        if state["over"]:  # a late event after the result: it must not overwrite the final status
            return
        clock.update(ev)
        if not token.cancelled:
            now = time.perf_counter()
            if panel is not None or status is not None:
                first = state["last"] == 0.0
                if first or now - state["last"] >= STATUS_EVERY_S or (ev.total and ev.step >= ev.total):
                    state["last"] = now
                    text = clock.text()
                    if panel is not None:
                        panel.show(ev, text)
                    if status is not None:
                        status(text)
        if on_progress is not None:
            on_progress(ev)

    def _error(e: BaseException) -> None:
        state["over"] = True
        if on_error is not None:
            on_error(e)
        else:
            notify_error(f"{desc} failed: {e}")

    def _cancel() -> None:
        token.cancel()
        h = state["handle"]
        if h is not None and hasattr(h, "quit"):
            h.quit()

    def _end() -> None:
        if panel is not None:
            panel.end()

    if panel is not None:
        panel.begin(desc, _cancel)

    if sync_workers():
        handle = _SyncHandle()
        handle.cancel = _cancel
        state["handle"] = handle

        def _until_cancelled():
            gen = gen_factory()
            try:
                while True:
                    try:
                        ev = next(gen)
                    except StopIteration as stop:
                        return stop.value
                    yield ev
                    if token.cancelled:
                        gen.close()
                        raise _Aborted
            finally:
                gen.close()

        from ..progress import Cancelled

        try:
            result = drive(_until_cancelled(), use_tqdm=False, callback=_progress)
        except (_Aborted, Cancelled):
            pbar.close()
            _end()
            if on_aborted is not None:
                on_aborted()
            if on_finished is not None:
                on_finished()
            return handle
        except Exception as e:  # noqa: BLE001 - reported, not raised (as the threaded path)
            pbar.close()
            _end()
            _error(e)
            if on_finished is not None:
                on_finished()
            return handle
        pbar.close()
        _end()
        if token.cancelled and on_aborted is not None:
            on_aborted()
        elif on_done is not None:
            on_done(result)
        if on_finished is not None:
            on_finished()
        return handle

    from napari.qt.threading import thread_worker

    def _run():  # a generator function, so napari makes a GeneratorWorker (quit at each yield)
        from ..progress import Cancelled

        lower_thread_priority()
        gen = gen_factory()
        try:
            return (yield from gen)
        except Cancelled:  # the core saw the token: an abort, not an error
            token.cancel()
            return None
        except RuntimeError as e:
            # superqt's GeneratorWorker takes any RuntimeError for "the worker was deleted": it
            # would emit neither errored nor finished and leave the dock busy for good
            raise CoreError(str(e)) from e

    # errors are reported once, by ``_error`` (else napari would also re-raise them in the
    # main thread: a second notification, and an exception in the Qt event loop)
    worker = thread_worker(_run, start_thread=False, ignore_errors=True)()
    state["handle"] = worker
    worker.yielded.connect(_progress)

    def _returned(result) -> None:
        state["over"] = True
        if token.cancelled:  # cancelled after the last yield: nothing is kept
            if on_aborted is not None:
                on_aborted()
        elif on_done is not None:
            on_done(result)

    worker.returned.connect(_returned)
    worker.errored.connect(_error)
    def _aborted() -> None:
        state["over"] = True
        if on_aborted is not None:
            on_aborted()

    worker.aborted.connect(_aborted)
    worker.finished.connect(pbar.close)
    worker.finished.connect(_end)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.cancel = _cancel
    worker.start()
    return worker


class _Aborted(Exception):
    """The synchronous driver's quit (a cancelled token)."""


class CoreError(Exception):
    """A RuntimeError of core code re-raised from a thread worker (see ``start_worker``), so that
    the worker reports it through ``errored`` and ``finished`` like any other error."""


def warm_units() -> None:
    """Initialise pint's application registry (napari's layer transforms use its units; the
    first layer of a session otherwise builds it in the GUI thread: seconds on a busy machine)."""
    import pint

    pint.get_application_registry().pixel  # noqa: B018 - the lazy registry is built on first use


_DOCKS_WARMED = False


def warm_docks() -> None:
    """Prepare the docks in a worker, once per process, while the user looks at the data: import
    matplotlib's Qt canvas (the docks' charts; ~1 s of imports) and read napari's plugin settings
    (the docks' defaults; ~0.3 s of plugin-manifest parsing), so that the first dock opens
    without either on the GUI thread. Nothing with synchronous workers (tests) or when both are
    done already; a failure is silent (the dock does it itself then)."""
    global _DOCKS_WARMED
    if _DOCKS_WARMED or sync_workers():
        return
    charts = "matplotlib.backends.backend_qtagg" not in sys.modules
    settings = not _dock_kit.settings_built()
    if not (charts or settings):
        return
    _DOCKS_WARMED = True

    def _gen():
        if settings:
            _dock_kit.warm_plugin_settings()
        if charts:
            import matplotlib.backends.backend_qtagg  # noqa: F401
            import matplotlib.figure  # noqa: F401

        return None
        yield

    start_worker(_gen, desc="SCR2-ST: preparing the docks", quiet=True, on_error=lambda e: None)  # noqa: ARG005


def build_layers(layers) -> list:
    """napari layers from layer-data tuples ``(data, kwargs, kind)``, built in the calling thread.

    Called in a worker: each layer's arrays, colours, features table and contrast limits are
    computed there, so that the GUI thread only adds the finished layers. Items that are
    already layers pass through."""
    from napari.layers import Layer

    warm_units()
    return [item if isinstance(item, Layer) else Layer.create(item[0], item[1], item[2]) for item in layers]


def add_layer_tuples(viewer, layers) -> list:
    """Add napari layer-data tuples ``(data, kwargs, kind)`` or layers built by
    :func:`build_layers` to ``viewer``; returns the layers."""
    out = []
    for item in layers:
        if isinstance(item, tuple):
            data, kw, kind = item
            out.append(getattr(viewer, f"add_{kind}")(data, **kw))
        else:
            out.append(viewer.add_layer(item))
    return out


def run_in_turns(steps, then: Callable[[], Any] | None = None) -> bool:
    """Run ``steps`` (callables) one per turn of the Qt event loop, then ``then()``.

    The first step runs now; each next one from a zero-delay timer, so the viewer repaints and
    takes input in between. With synchronous workers (tests), or a single step, all run now.
    A step raising ``RuntimeError`` (its window, i.e. its Qt objects, went away between two
    turns) ends the chain quietly, without ``then``. Returns True when everything ran now."""
    steps = list(steps)
    if sync_workers() or len(steps) <= 1:
        for step in steps:
            step()
        if then is not None:
            then()
        return True
    from qtpy.QtCore import QTimer

    def _next(i: int) -> None:
        try:
            steps[i]()
        except RuntimeError:
            return
        if i + 1 < len(steps):
            QTimer.singleShot(0, lambda: _next(i + 1))
        elif then is not None:
            then()

    _next(0)
    return False


def add_in_turns(viewer, layers, then: Callable[[list], Any] | None = None, *,
                 before: Callable[[], Any] | None = None) -> list | None:
    """Add layers one per turn of the Qt event loop (``before`` first, in a turn of its own), then
    call ``then(added)``.

    napari adds a layer on the GUI thread (its vispy visual, its controls widget, the layer list
    row: 0.1-0.3 s for an image on a software-rendered canvas); a section's image, spots and
    maps added in one go froze the viewer for the sum. Between the turns the viewer repaints and
    takes input, so the longest freeze is one layer's (:func:`run_in_turns`). With synchronous
    workers (tests), or a single step, everything happens at once and the layers are returned;
    otherwise ``None`` (``then`` gets them). A window closed meanwhile ends it quietly."""
    items = list(layers or [])
    steps: list[Callable[[], Any]] = [before] if before is not None else []
    added: list = []
    steps += [lambda item=item: added.extend(add_layer_tuples(viewer, [item])) for item in items]
    now = run_in_turns(steps, (lambda: then(added)) if then is not None else None)
    return added if now else None


def load_layers_in_background(viewer, title: str, gen_factory, *, placeholder: str | None = None,
                              on_added: Callable[[list], Any] | None = None, start_later: bool = False):
    """Read in a worker and add the layers it returns when it is done (nothing if cancelled).
    The worker also makes the napari layers from the layer-data tuples (:func:`build_layers`);
    the GUI thread only adds them, one per turn of the event loop (:func:`add_in_turns`).

    A small dock titled ``title`` shows the progress bar, the time left and a Cancel button
    while the work runs and goes away afterwards. ``placeholder``: the name of a layer that
    stands in for the result (a sample must return one at once); it is removed when the work
    ends.

    ``start_later``: the worker starts in the next turn of the event loop (a sample: napari
    makes its placeholder, the session's first layer, right after this returns, and that first
    layer imports pandas and builds pint's unit registry in the GUI thread; with the worker
    already importing the section's modules both wait on each other's imports and the GIL).
    The dock shows at once; a Cancel before the start starts nothing. Returns the worker
    (``None`` with ``start_later``).
    """
    _vispy_speedups.attach(viewer, glyphs=not sync_workers())  # shorter first paints of what it adds (shaders, glyphs)
    panel = WorkerPanel()
    dock = viewer.window.add_dock_widget(panel.widget, name=title, area="right")
    state = {"dock": dock}

    def _drop_placeholder() -> None:
        if placeholder is not None and placeholder in viewer.layers:
            viewer.layers.remove(placeholder)

    def _shown(added: list) -> None:
        if on_added is not None:
            on_added(added)
        warm_docks()  # the data is shown: the docks' code loads while the user looks at it
        _heap.freeze_later(viewer)  # and the long-lived heap is frozen (short collections after)

    def _done(layers) -> None:
        # the placeholder goes, then each layer comes, in turns of their own (add_in_turns)
        add_in_turns(viewer, layers, _shown, before=_drop_placeholder if placeholder is not None else None)

    def _read_and_build():
        # the napari layers are made here too (arrays, colours, features, transforms: 0.2-0.35 s
        # a layer on this machine), so that the GUI thread only adds them
        layers = yield from gen_factory()
        return build_layers(layers or [])

    def _aborted() -> None:
        _drop_placeholder()
        notify_info(f"{title}: cancelled, nothing was added")

    def _error(e: BaseException) -> None:
        _drop_placeholder()
        notify_error(f"{title} failed: {e}")

    def _finished() -> None:
        d = state.pop("dock", None)
        if d is not None:
            try:
                viewer.window.remove_dock_widget(d)
            except Exception:  # noqa: BLE001 - the user may have closed the window
                pass

    def _start():
        return start_worker(_read_and_build, desc=title, on_done=_done, on_aborted=_aborted, on_error=_error,
                            on_finished=_finished, panel=panel)

    if not start_later or sync_workers():
        return _start()
    from qtpy.QtCore import QTimer

    panel.begin(title, lambda: state.update(cancelled=True))

    def _go() -> None:
        if state.get("cancelled"):
            panel.end()
            _aborted()
            _finished()
            return
        _start()

    QTimer.singleShot(0, _go)
    return None


def notify_error(msg: str) -> None:
    from napari.utils.notifications import show_error

    show_error(msg)


def notify_info(msg: str) -> None:
    from napari.utils.notifications import show_info

    show_info(msg)


