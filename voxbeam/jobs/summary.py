"""What a run did, read back from its own outputs, for the closing report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from voxbeam.beam import DEAD_LETTERS, storage
from voxbeam.jobs.inputs import read_parquet


@dataclass
class Summary:
    """What a run did, for the closing report."""

    kind: str
    inputs: int
    written: int = 0
    skipped: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    outputs: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"{self.kind}: {self.written} rows written, {sum(self.dead_letters.values())} dead letters"]
        if self.skipped:
            out.append(f"skipped (unchanged since earlier runs): {self.skipped}")
        for code, n in sorted(self.dead_letters.items()):
            out.append(f"  dead letters {code}: {n}")
        for path in self.outputs:
            out.append(f"  output: {path}")
        out.append(f"wall time: {self.wall_seconds:.1f} s")
        return out


def summarize(summary: Summary, output: str, run_id: str, main: str) -> None:
    """Count what this run wrote by reading its own partition back."""
    for name in (main, DEAD_LETTERS):
        for f in storage.match(storage.join(output, name, f"run={run_id}", "*.parquet")):
            with storage.open_read(f.uri) as fh:
                table = read_parquet(fh.read())
            if name == main:
                summary.written += table.num_rows
                summary.outputs.append(f.uri)
            else:
                summary.dead_letters.update(table.column("error_code").to_pylist())
                if table.num_rows:
                    summary.outputs.append(f.uri)
