"""Generator-based long work: progress events, cancellation, and drivers for CLI and tests.

Long-running core functions are written as generators named ``iter_*`` that ``yield``
:class:`Progress` events and ``return`` their result. The same generator is driven

- by the CLI with a tqdm bar (:func:`drive` with ``use_tqdm=True``),
- by napari's ``thread_worker`` (the widget connects ``yielded`` to a progress bar and calls
  ``worker.quit()`` to cancel: the generator stops at its next ``yield``),
- synchronously in tests (:func:`drive` with ``use_tqdm=False``).

Functions that need a cancel flag inside tight loops take a :class:`CancelToken`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["Progress", "CancelToken", "Cancelled", "drive"]


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
    """
    bar = None
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as stop:
                return stop.value
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
