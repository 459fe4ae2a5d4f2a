"""The `tfops` command line: one module per command in tfops.commands, each with
`register(commands)` adding its parser and a handler returning the exit code."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from tfops import __version__
from tfops.commands import crd, dev_cluster, guard_replay, inspect, promote, render, run

# In the order `tfops --help` lists them.
COMMANDS = (run, render, crd, promote, inspect, guard_replay, dev_cluster)


class _Parser(argparse.ArgumentParser):
    """Bad arguments give one line on stderr (and exit 2), not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tfops", description="Run TensorFlow Serving safely on Kubernetes.")
    parser.add_argument("--version", action="version", version=f"tfops {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for command in COMMANDS:
        command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command. Whatever happens, the user gets one line on stderr and a
    documented exit code, never a traceback (TFOPS_DEBUG=1 prints it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    name = f"tfops {args.command}"
    try:
        code = int(args.handler(args))
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return 130
    except OSError as error:  # stdout closed or full, and the like
        _silence_stdout()
        print(f"{name}: {error.strerror or error}", file=sys.stderr)
        return 1
    except Exception as error:  # a bug: still one line, and how to see more
        if os.environ.get("TFOPS_DEBUG"):
            traceback.print_exc()
        print(
            f"{name}: unexpected {type(error).__name__}: {error} "
            "(set TFOPS_DEBUG=1 for details, and please report it)",
            file=sys.stderr,
        )
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of a closed or
    full stdout does not print a second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
