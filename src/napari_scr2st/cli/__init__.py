"""The ``scr2st`` command: thin verbs over the core modules.

``scr2st info PATH``    summary of any supported input
``scr2st demo``         the whole pipeline on the embedded synthetic sample
``scr2st select`` / ``import-counts`` / ``train-policy``   (see ``cli/_sampling.py``)
``scr2st benchmark sampling`` / ``within-slide``   (see ``cli/_benchmark.py``)
``scr2st train`` / ``predict`` / ``evaluate``                    (see ``cli/_model.py``)
``python -m torch.distributed.run ... -m napari_scr2st.cli.ddp``  ``scr2st train`` under DDP (``cli/ddp.py``)

Every failure ends as ONE line on stderr, ``scr2st VERB: error: ...`` naming the file or option
and what was expected, with exit code 2 (usage errors included); Ctrl-C ends with exit code 130
and a line saying which files were left as they were (every file is written atomically).
Warnings are printed as ``scr2st VERB: warning: ...`` lines. ``SCR2ST_DEBUG=1`` re-raises
unexpected errors with their traceback.

Heavy imports (torch, scanpy) happen inside the verbs so ``scr2st --help`` is instant.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

from ._common import ArgumentParser, CLIError

__all__ = ["main", "build_parser"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from . import _demo, _info, _model, _sampling

    parser = ArgumentParser(
        prog="scr2st",
        description="Single-cell guided active sampling and expression prediction for spatial transcriptomics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _info.register(sub)
    _demo.register(sub)
    _sampling.register(sub)
    _model.register(sub)
    return parser


def _verb(args: argparse.Namespace | None, argv: list[str]) -> str:
    if args is not None and getattr(args, "command", None):
        what = getattr(args, "benchmark_what", None)
        return f"{args.command} {what}" if what else str(args.command)
    return next((a for a in argv if not a.startswith("-")), "")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def error_message(e: BaseException) -> str:
    """What went wrong, in one line that names the file where the exception knows it."""
    if isinstance(e, KeyError):
        return _one_line(e.args[0] if e.args else repr(e))
    if isinstance(e, OSError) and getattr(e, "filename", None):
        name = e.filename
        if isinstance(e, PermissionError):
            return f"{name}: permission denied"
        if isinstance(e, IsADirectoryError):
            return f"{name} is a folder; expected a file"
        if isinstance(e, FileNotFoundError):
            return f"{name}: no such file or folder"
        return f"{name}: {e.strerror or type(e).__name__}"
    msg = _one_line(e)
    if isinstance(e, (ValueError, FileNotFoundError)):
        return msg or type(e).__name__
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def kept_files(args: argparse.Namespace) -> str:
    """What Ctrl-C left as it was: the outputs of ``args`` (written atomically, so unchanged)."""
    outs = [str(getattr(args, k)) for k in ("state", "out") if getattr(args, k, None)]
    if not outs:
        return "nothing was written"
    said = ", ".join(f"{o} {'is unchanged' if Path(o).exists() else 'was not written'}" for o in outs)
    ckpt = Path(str(getattr(args, "out", ""))) / "last.pt"
    if getattr(args, "command", "") == "train" and ckpt.is_file():
        said += f"; {ckpt} holds the last finished epoch (continue with --resume {ckpt})"
    return said


def _forget_unhandled_interrupt() -> None:
    """Clear CPython's "unhandled Ctrl-C" flag after the CLI has handled a KeyboardInterrupt.

    CPython marks a KeyboardInterrupt that leaves code run by ``exec``/``eval`` of a string (as
    ``dataclasses`` and ``namedtuple`` do when a class is built) as unhandled, even when an outer
    ``except`` catches it; under ``python -m`` the process then kills itself with SIGINT at exit
    (return code -2) instead of exiting 130. Every string ``exec`` resets that flag when it starts,
    so one empty one, after the interrupt was handled, restores the documented exit code.
    """
    exec("pass")  # noqa: S102 - a constant string; its only effect is resetting the flag


@contextlib.contextmanager
def _ctrl_c_recorded():
    """While a command runs, a SIGINT also records the Ctrl-C (see :func:`progress.note_interrupt`).

    Installed only where Python's own handler is in place and only from the main thread, so an
    embedding application's handler (or an ignored SIGINT) is left alone; restored afterwards.
    """
    from .. import progress

    progress.clear_interrupt()
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return

    def on_sigint(signum, frame):
        progress.note_interrupt()
        signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        progress.clear_interrupt()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None

    def show(message, *_where, **_kw):  # warnings.showwarning's signature; where it came from is not shown
        print(f"scr2st {_verb(args, argv)}: warning: {_one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings(), _ctrl_c_recorded():
        warnings.showwarning = show
        try:
            parser = build_parser()
            args = parser.parse_args(argv)
            if not getattr(args, "func", None):
                parser.print_help()
                return 1
            return int(args.func(args) or 0)
        except KeyboardInterrupt:
            kept = kept_files(args) if args is not None else "nothing was written"
            print(f"scr2st {_verb(args, argv)}: interrupted (Ctrl-C); {kept}", file=sys.stderr)
            _forget_unhandled_interrupt()
            return EXIT_INTERRUPTED
        except CLIError as e:
            msg = str(e)
            if args is None and msg.startswith("scr2st"):  # a usage error names its parser already
                print(_one_line(msg), file=sys.stderr)
            else:
                print(f"scr2st {_verb(args, argv)}: error: {_one_line(msg)}", file=sys.stderr)
            return EXIT_ERROR
        except Exception as e:
            if os.environ.get("SCR2ST_DEBUG"):
                raise
            print(f"scr2st {_verb(args, argv)}: error: {error_message(e)}", file=sys.stderr)
            return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
