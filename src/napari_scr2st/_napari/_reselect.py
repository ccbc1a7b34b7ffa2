"""Re-selection off the UI thread: one worker per session, the newest request wins.

A slider move, a manual pick, an ROI, a sequenced round: each asks the session to
:meth:`~napari_scr2st.session.AcquisitionSession.reselect`. In napari the session's
``reselect_runner`` is a :class:`Reselector`: it computes
:meth:`~napari_scr2st.session.AcquisitionSession.compute_preview` in a thread worker, builds what
the layers need from it there too (registered *builders*: the selection layer's arrays, the
hover table), and on the main thread only shows it
(:meth:`~napari_scr2st.session.AcquisitionSession.show_preview`), which hands the prebuilt
arrays to the layer code. At most one computation runs per session; a request while it runs is
remembered (one, the newest) and its result is DROPPED when it comes back (stale: a newer
request exists, or the selection or settings changed meanwhile), then the newest request runs.

With ``SCR2ST_SYNC_WORKERS=1`` (tests) everything runs at once in the calling thread and
errors are raised as the session's own :meth:`reselect` raises them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from . import _workers as W

RUNNER_KEY = "_scr2st_reselector"


class Reselector:
    """The ``reselect_runner`` of one session (see the module docstring)."""

    def __init__(self, session) -> None:
        self._session = weakref.ref(session)
        self.worker = None
        self.pending = False
        #: ``name -> fn(session, preview, built)`` run in the worker after the proposal, in
        #: order (``built``: the results of the builders before it); the results are kept
        #: with the preview they were built for (:meth:`built_for`)
        self.builders: dict[str, Callable[[Any, Any, dict], Any]] = {}
        self._built: tuple[Any, dict[str, Any]] | None = None
        self._terms: tuple[Any, Any] | None = None  # (token, preview) whose terms come next
        #: counts, for tests and benchmarks: computations started, results shown, results dropped
        self.stats = {"started": 0, "shown": 0, "dropped": 0, "failed": 0}

    # ------------------------------------------------------------------ install
    @classmethod
    def install(cls, session) -> Reselector:
        """The session's reselector (created and set as its ``reselect_runner`` once)."""
        r = session.__dict__.get(RUNNER_KEY)
        if r is None:
            r = cls(session)
            session.__dict__[RUNNER_KEY] = r
            session.reselect_runner = r
        return r

    @staticmethod
    def of(session) -> Reselector | None:
        return None if session is None else session.__dict__.get(RUNNER_KEY)

    @property
    def session(self):
        return self._session()

    @property
    def busy(self) -> bool:
        return self.worker is not None

    # ------------------------------------------------------------------ prebuilt layer data
    def built_for(self, preview, name: str) -> Any:
        """What builder ``name`` made in the worker for ``preview`` (the preview shown), or None."""
        b = self._built
        if b is None or b[0] is not preview:
            return None
        return b[1].get(name)

    def _build(self, s, prev) -> dict[str, Any]:
        b = self._built
        ctx = (id(s.predictions), s.gene)  # what the hover shows besides the selection
        if b is not None and b[0] is not None and b[0].result is prev.result and b[1] and b[1].get("_ctx") == ctx:
            return b[1]  # the same proposal (e.g. a weight the sampler ignores): the same layers
        out: dict[str, Any] = {"_ctx": ctx}
        for name, fn in list(self.builders.items()):
            out[name] = fn(s, prev, out)
        return out

    # ------------------------------------------------------------------ requests
    def __call__(self) -> None:
        self.request()

    def request(self) -> None:
        """Re-select for the session's current state (in a worker; the newest request wins)."""
        s = self.session
        if s is None or not s.is_prepared:
            return
        if W.sync_workers():
            token, prev = s.compute_preview()
            built = self._build(s, prev) if prev is not None else {}
            self._show(s, token, prev, built)
            return
        if self.worker is not None:
            self.pending = True  # the running result will be dropped; this one runs next
            return
        self._start(s)

    def _start(self, s) -> None:
        self.pending = False
        self.stats["started"] += 1
        start = s.selection_token()  # taken on the main thread, the only one that changes the state
        builders = self._build

        def _gen():  # step 1: the proposal and the layers' arrays (its reward terms follow)
            token, prev = s.compute_preview(terms=False)
            built = builders(s, prev) if prev is not None and s.is_current(token) else {}
            return token, prev, built
            yield  # a generator: the worker can be stopped between steps

        self.worker = W.start_worker(
            _gen, desc="SCR2-ST: re-selecting", quiet=True,
            on_done=lambda res: self._done(s, start, res),
            on_error=lambda e: self._failed(s, start, e),
            on_finished=self._finished,
        )

    def _stale(self, s, start, token=None) -> bool:
        """A newer request waits, or the state changed since ``start``: drop the result."""
        if self.pending or (token is not None and token != start) or not s.is_current(start):
            self.stats["dropped"] += 1
            self.pending = True  # compute the state as it is now
            return True
        return False

    def _done(self, s, start, res) -> None:
        token, prev, built = res
        if self._stale(s, start, token):
            return
        self._show(s, token, prev, built)
        if prev is not None and not prev.terms_ready and s.preview is prev:
            self._terms = (token, prev)  # step 2 starts when this worker has finished

    def _start_terms(self, s, token, prev) -> None:
        """Step 2: the expected reward terms of the shown preview (the chart), in a worker."""
        self.stats["started"] += 1

        def _gen():
            return s.compute_terms(prev)
            yield

        self.worker = W.start_worker(
            _gen, desc="SCR2-ST: reward terms", quiet=True,
            on_done=lambda terms: self._terms_done(s, token, prev, terms),
            on_error=lambda e: self._failed(s, token, e),
            on_finished=self._finished,
        )

    def _terms_done(self, s, token, prev, terms) -> None:
        if self._stale(s, token):
            return
        if not s.show_terms(prev, token, terms):
            self.stats["dropped"] += 1

    def _show(self, s, token, prev, built) -> None:
        self._built = (prev, built)
        if s.show_preview(prev, token):
            self.stats["shown"] += 1
        else:
            self.stats["dropped"] += 1

    def _failed(self, s, start, e: BaseException) -> None:
        if self._stale(s, start):  # about an older state; the newest request runs next
            return
        self.stats["failed"] += 1
        s.selection_failed.emit(str(e))

    def _finished(self) -> None:
        self.worker = None
        s = self.session
        terms, self._terms = self._terms, None
        if self.pending and s is not None and s.is_prepared:
            self._start(s)  # the newest request first; its own terms follow it
        elif terms is not None and s is not None and s.preview is terms[1] and s.is_current(terms[0]):
            self._start_terms(s, *terms)
        else:
            self.pending = False
