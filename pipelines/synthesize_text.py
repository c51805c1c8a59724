"""Render text records into audio objects plus a Parquet manifest with Apache Beam.

    python pipelines/synthesize_text.py --input examples/sentences.txt --output out/

Thin main over voxbeam.jobs; every option is described by --help. Also the entry point
of the synthesize_text Flex Template.
"""

import sys
from pathlib import Path

try:
    from voxbeam.jobs import main
except ModuleNotFoundError as exc:  # run from a source checkout without `pip install`
    if exc.name != "voxbeam":
        raise
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from voxbeam.jobs import main

if __name__ == "__main__":
    sys.exit(main("synthesize"))
