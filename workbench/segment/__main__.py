"""``python -m workbench.segment RUN_DIR``: the background XSeg trainer (see workbench.segment.start_xseg)."""

import sys

from .trainer import main

if __name__ == "__main__":
    sys.exit(main())
