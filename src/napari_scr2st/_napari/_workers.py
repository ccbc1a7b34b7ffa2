"""Core generators in napari thread workers, with a progress bar; notifications."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from typing import Any

from ..progress import Progress

SYNC_ENV = "SCR2ST_SYNC_WORKERS"


def sync_workers() -> bool:
    """``SCR2ST_SYNC_WORKERS=1`` runs generators in the calling thread (tests), as stardist-napari."""
    return os.environ.get(SYNC_ENV, "").strip().lower() not in ("", "0", "false", "no")


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


class _SyncHandle:
    """What :func:`start_worker` returns in synchronous mode (same surface as a worker)."""

    is_running = False

    def quit(self) -> None:  # pragma: no cover - nothing to stop
        pass


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
):
    """Run a core generator in a napari thread worker with a progress bar in the activity dock.

    ``worker.quit()`` stops it at the next yield. Errors go to ``on_error`` (default: a napari
    error notification), never to a crash. With ``SCR2ST_SYNC_WORKERS=1`` the generator runs
    synchronously and the same callbacks fire.
    """
    from napari.utils import progress

    from ..progress import drive

    pbar = progress(total=0, desc=desc) if not quiet else _NoBar()
    state = {"desc": ""}

    def _progress(ev: Progress) -> None:
        if ev.total and pbar.total != ev.total:
            pbar.total = ev.total
        if ev.step > pbar.n:
            pbar.update(ev.step - pbar.n)
        if ev.message and ev.message != state["desc"]:
            state["desc"] = ev.message
            pbar.set_description(f"{desc}: {ev.message}")
        if on_progress is not None:
            on_progress(ev)

    def _error(e: BaseException) -> None:
        if on_error is not None:
            on_error(e)
        else:
            notify_error(f"{desc} failed: {e}")

    if sync_workers():
        try:
            result = drive(gen_factory(), use_tqdm=False, callback=_progress)
        except Exception as e:  # noqa: BLE001 - reported, not raised (as the threaded path)
            pbar.close()
            _error(e)
            if on_finished is not None:
                on_finished()
            return _SyncHandle()
        pbar.close()
        if on_done is not None:
            on_done(result)
        if on_finished is not None:
            on_finished()
        return _SyncHandle()

    from napari.qt.threading import thread_worker

    def _run():  # a generator function, so napari makes a GeneratorWorker (quit at each yield)
        return (yield from gen_factory())

    worker = thread_worker(_run, start_thread=False)()
    worker.yielded.connect(_progress)
    if on_done is not None:
        worker.returned.connect(on_done)
    worker.errored.connect(_error)
    if on_aborted is not None:
        worker.aborted.connect(on_aborted)
    worker.finished.connect(pbar.close)
    if on_finished is not None:
        worker.finished.connect(on_finished)
    worker.start()
    return worker


def notify_error(msg: str) -> None:
    from napari.utils.notifications import show_error

    show_error(msg)


def notify_info(msg: str) -> None:
    from napari.utils.notifications import show_info

    show_info(msg)


