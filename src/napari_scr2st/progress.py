"""Generator-based long work: progress events, cancellation, and drivers for CLI and tests.

Long-running core functions are written as generators named ``iter_*`` that ``yield``
:class:`Progress` events and ``return`` their result. The same generator is driven

- by the CLI with a tqdm bar (:func:`drive` with ``use_tqdm=True``),
- by napari's ``thread_worker`` (the widget connects ``yielded`` to a progress bar and calls
  ``worker.quit()`` to cancel: the generator stops at its next ``yield``),
- synchronously in tests (:func:`drive` with ``use_tqdm=False``).

Functions that need a cancel flag inside tight loops take a :class:`CancelToken`.

A Ctrl-C can be lost: Python raises the KeyboardInterrupt in whatever code the main thread runs
at that moment, and one raised inside a ``__del__`` method or a weakref callback is printed as
"Exception ignored" and dropped. The CLI therefore also records each Ctrl-C
(:func:`note_interrupt`), and :func:`drive` raises KeyboardInterrupt at the next progress event
when one was recorded, so a long run always stops.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["Progress", "CancelToken", "Cancelled", "ProgressClock", "drive", "eta_seconds", "format_seconds",
           "note_interrupt", "clear_interrupt", "interrupt_noted"]

_CTRL_C = threading.Event()


def note_interrupt() -> None:
    """Record a Ctrl-C (the CLI's SIGINT handler calls this before raising KeyboardInterrupt)."""
    _CTRL_C.set()


def clear_interrupt() -> None:
    """Forget a recorded Ctrl-C (the CLI does at the start and end of each command)."""
    _CTRL_C.clear()


def interrupt_noted() -> bool:
    """Whether a Ctrl-C was recorded since the last :func:`clear_interrupt`."""
    return _CTRL_C.is_set()


@dataclass
class Progress:
    """One progress event: ``step`` of ``total`` (``total`` 0 when unknown)."""

    step: int
    total: int
    message: str = ""
    metrics: dict[str, float] = field(default_factory=dict)


class Cancelled(RuntimeError):
    """Raised by :meth:`CancelToken.raise_if_cancelled` when work was cancelled."""


class CancelToken:
    """A thread-safe cancel flag shared between a GUI thread and a worker."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise Cancelled("cancelled by the user")


def drive(
    gen: Generator[Progress, None, T],
    *,
    desc: str = "",
    use_tqdm: bool = True,
    callback: Callable[[Progress], Any] | None = None,
) -> T:
    """Run a progress generator to completion and return its result.

    With ``use_tqdm`` a tqdm bar (to stderr) follows the events; ``callback`` sees each event.
    A Ctrl-C recorded with :func:`note_interrupt` raises KeyboardInterrupt at the next event
    (the generator is closed), even when the original KeyboardInterrupt was swallowed.
    """
    bar = None
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                return stop.value
            if _CTRL_C.is_set():
                gen.close()
                raise KeyboardInterrupt
            if callback is not None:
                callback(ev)
            if use_tqdm:
                if bar is None:
                    from tqdm.auto import tqdm

                    bar = tqdm(total=ev.total or None, desc=desc, leave=False)
                if ev.total and bar.total != ev.total:
                    bar.total = ev.total
                bar.n = ev.step
                if ev.metrics:
                    bar.set_postfix({k: f"{v:.4g}" for k, v in ev.metrics.items()}, refresh=False)
                if ev.message:
                    bar.set_description_str(f"{desc} {ev.message}".strip(), refresh=False)
                bar.refresh()
    finally:
        if bar is not None:
            bar.close()


def eta_seconds(elapsed: float, done: float, total: float) -> float | None:
    """Time left from the rate so far: ``elapsed / done * (total - done)`` (None while unknown)."""
    if not total or done <= 0 or elapsed < 0:
        return None
    return max(0.0, float(elapsed) / float(done) * (float(total) - float(done)))


def format_seconds(s: float) -> str:
    """``42 s``, ``3 min 5 s``, ``1 h 02 min``: a duration for status texts."""
    s = max(0, int(round(s)))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        m, r = divmod(s, 60)
        return f"{m} min {r} s" if r else f"{m} min"
    h, r = divmod(s, 3600)
    return f"{h} h {r // 60:02d} min"


class ProgressClock:
    """Turns :class:`Progress` events into ``message · done/total (pct) · time left`` texts.

    A long run has phases whose events count different things (spots embedded, then training
    steps): a new phase starts when ``total`` changes or ``step`` goes back, and the time left
    is estimated from the events of the current phase only (:func:`eta_seconds`).
    ``clock`` is injectable for tests.
    """

    def __init__(self, clock=time.perf_counter) -> None:
        self._clock = clock
        self.started = clock()
        self._phase_t0 = self.started
        self._phase_step0 = 0
        self._total = None
        self._step = 0
        self.last: Progress | None = None

    def update(self, ev: Progress) -> None:
        now = self._clock()
        if ev.total != self._total or ev.step < self._step:
            self._total = ev.total
            self._phase_t0, self._phase_step0 = now, ev.step
        self._step = ev.step
        self.last = ev
        self._now = now

    @property
    def elapsed(self) -> float:
        return self._clock() - self.started

    def eta(self) -> float | None:
        ev = self.last
        if ev is None or not ev.total:
            return None
        done = ev.step - self._phase_step0
        return eta_seconds(self._now - self._phase_t0, done, ev.total - self._phase_step0)

    def fraction(self) -> float | None:
        ev = self.last
        if ev is None or not ev.total:
            return None
        return min(1.0, max(0.0, ev.step / ev.total))

    def text(self, ev: Progress | None = None) -> str:
        """The status line of the last event (after updating with ``ev`` when given)."""
        if ev is not None:
            self.update(ev)
        ev = self.last
        if ev is None:
            return ""
        parts = [ev.message] if ev.message else []
        if ev.total:
            parts.append(f"{ev.step}/{ev.total} ({100 * ev.step / ev.total:.0f}%)")
            eta = self.eta()
            if ev.step >= ev.total:
                pass
            elif eta is None:
                parts.append("estimating time left")
            else:
                parts.append(f"about {format_seconds(eta)} left")
        else:
            parts.append(f"{format_seconds(self.elapsed)} elapsed")
        return " · ".join(parts)
