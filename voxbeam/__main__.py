"""`python -m voxbeam` is the `voxbeam` command."""

import sys

from voxbeam.cli import main

sys.exit(main())
