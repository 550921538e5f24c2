"""Dispatch ``python -m workbench.bench NAME [args]`` to ``workbench/bench/NAME.py:main``."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

from ..errors import WorkbenchError


def main(argv: list[str]) -> int:
    available = sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if not m.name.startswith("_"))
    if not argv or argv[0] not in available:
        print(f"usage: python -m workbench.bench {{{','.join(available)}}} [options]")
        return 1
    module = importlib.import_module(f"workbench.bench.{argv[0]}")
    try:
        return int(module.main(argv[1:]) or 0)
    except WorkbenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
