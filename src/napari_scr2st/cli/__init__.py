"""The ``scr2st`` command: thin verbs over the core modules.

``scr2st info PATH``    summary of any supported input
``scr2st demo``         the whole pipeline on the embedded synthetic sample
``scr2st select`` / ``train-policy`` / ``benchmark sampling``   (see ``cli/_sampling.py``)
``scr2st train`` / ``predict`` / ``evaluate``                    (see ``cli/_model.py``)
``python -m torch.distributed.run ... -m napari_scr2st.cli.ddp``  ``scr2st train`` under DDP (``cli/ddp.py``)

Heavy imports (torch, scanpy) happen inside the verbs so ``scr2st --help`` is instant.
"""

from __future__ import annotations

import argparse
import sys

from ._common import CLIError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from . import _demo, _info, _model, _sampling

    parser = argparse.ArgumentParser(
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        rc = args.func(args)
    except CLIError as e:
        print(f"scr2st {args.command}: error: {e}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, KeyError) as e:
        # SectionError is a ValueError: bad input is reported, not dumped as a traceback
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"scr2st {args.command}: error: {msg}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
