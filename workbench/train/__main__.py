"""``python -m workbench.train RUN_DIR``: the background trainer process (see workbench.train.start)."""

import sys

from .foreground import main

if __name__ == "__main__":
    sys.exit(main())
