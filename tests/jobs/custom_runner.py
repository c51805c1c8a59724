"""A runner that is not Beam's own, with an option of its own: what a third-party runner looks like.

It is the FnApiRunner under another name; when it runs a pipeline it writes ``ran`` into the
file its ``--custom_marker`` option names, so a test can see that the option reached it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner


class CustomRunnerOptions(PipelineOptions):
    @classmethod
    def _add_argparse_args(cls, parser: Any) -> None:
        parser.add_argument("--custom_marker", default=None, help="file to write 'ran' into when a pipeline runs")


class CustomRunner(FnApiRunner):
    def run_pipeline(self, pipeline: Any, options: PipelineOptions) -> Any:
        marker = options.view_as(CustomRunnerOptions).custom_marker
        if marker:
            Path(marker).write_text("ran")
        return super().run_pipeline(pipeline, options)
