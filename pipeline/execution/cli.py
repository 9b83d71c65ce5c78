"""What every entry point shares: `--debug`, and errors as one line that names the problem."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from ..layout import PARAMS


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog=prog, description=description)
    top.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return top


def positive(text: str) -> int:
    """A positive integer argument."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def params_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--params", type=Path, default=PARAMS,
                        help="parameters file (default: %(default)s)")


def command(top: argparse.ArgumentParser, action: Callable[[argparse.Namespace], object],
            argv: list[str] | None = None) -> int:
    """Parse `argv`, run `action`; 0, 2 for an error of ours (ValueError, OSError: they name the
    problem), 1 for anything else, 130 when interrupted."""
    args = top.parse_args(argv)
    try:
        action(args)
    except KeyboardInterrupt as err:  # SIGINT, or SIGTERM in a stage (`runtime.interruptible`)
        text = str(err).strip() or "interrupted"
        print(f"{text}: run the same command again to resume" if "resume" not in text else text, file=sys.stderr)
        return 130
    except Exception as err:  # one line that names the problem; the traceback only with --debug
        if args.debug:
            raise
        ours = isinstance(err, ValueError | OSError)  # our errors subclass these and name the problem
        text = str(err).strip().splitlines()[0] if str(err).strip() else ""
        text = text if ours else f"{type(err).__name__}: {text} (run with --debug for the traceback)"
        print(f"error: {text}", file=sys.stderr)
        return 2 if ours else 1
    return 0
