"""A runner that is not Beam's own, with an option of its own: what a third-party runner looks like.

It is the FnApiRunner under another name; when it runs a pipeline it writes ``ran`` into the
file its ``--custom_marker`` option names, so a test can see that the option reached it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.runners.runner import PipelineResult, PipelineRunner, PipelineState


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


class SubmitOnlyRunner(PipelineRunner):
    """What a Flex Template launcher's runner does: it submits the job and returns; the job runs later.

    Here nothing runs at all: the result says RUNNING and ``wait_until_finish`` returns at once.
    """

    def run_pipeline(self, pipeline: Any, options: PipelineOptions) -> PipelineResult:
        return _Submitted(PipelineState.RUNNING)


class _Submitted(PipelineResult):
    def wait_until_finish(self, duration: Any = None) -> Any:
        return self.state  # a launcher does not wait for the job it submitted
