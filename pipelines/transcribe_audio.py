"""Transcribe audio files into Parquet transcripts (and optional captions) with Apache Beam.

    python pipelines/transcribe_audio.py --input 'examples/*.wav' --output out/

Thin main over voxbeam.jobs; every option is described by --help. Also the entry point
of the transcribe_audio Flex Template.
"""

import sys

from voxbeam.jobs import main

if __name__ == "__main__":
    sys.exit(main("transcribe"))
