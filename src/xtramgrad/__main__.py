"""``python -m xtramgrad``: the command line (see :mod:`xtramgrad.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
