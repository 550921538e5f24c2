"""The `workbench` command: a thin argparse front end over the library.

Each subcommand lives in ``workbench/commands/<name>.py`` and exposes ``register(subparsers)``.
A WorkbenchError is printed as one clear message (file + hint), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from . import CONSENT_RULE, __version__
from .errors import WorkbenchError

# Explicit list (no plugin discovery): the order is the order of `workbench --help`.
COMMAND_MODULES = ("new", "extract", "xseg", "sort", "train", "merge", "evaluate", "export", "export_model", "demo",
                   "app", "jobs")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench",
        description="Face-Swap Workbench: the DeepFaceLab pipeline, step by step. " + CONSENT_RULE,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"workbench.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"workbench.commands.{name}":
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished work is kept; re-run the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
