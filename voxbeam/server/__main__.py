"""``python -m voxbeam.server``."""

import sys

from voxbeam.server.cli import main

if __name__ == "__main__":
    sys.exit(main())
