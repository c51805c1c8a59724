"""Transcribe audio files into Parquet transcripts (and optional captions) with Apache Beam.

    python pipelines/transcribe_audio.py --input 'examples/*.wav' --output out/

Thin main over voxbeam.jobs; every option is described by --help. Also the entry point
of the transcribe_audio Flex Template.
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
    sys.exit(main("transcribe"))
