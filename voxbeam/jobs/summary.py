"""What a run did, for the closing report (no Beam here: the CLI imports it before Beam)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


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
