"""What a run did, for the closing report, and the exit status it earns (no Beam here: the CLI imports it first)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from voxbeam.flags import DEFAULT_MAX_DEAD_LETTER_FRACTION

# Exit statuses; README.md "Exit codes" documents them for schedulers.
EXIT_OK = 0
EXIT_JOB_FAILED = 1  # the job itself broke (an uncaught error: its traceback says where)
EXIT_USAGE = 2  # a flag, input, output, endpoint or key was wrong; nothing was processed
EXIT_TOO_MANY_DEAD_LETTERS = 3  # more records failed than --max_dead_letter_fraction allows
EXIT_ALL_FAILED = 4  # every record failed: most likely one cause, named in the summary
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT), as shells report it

_MESSAGE_CHARS = 400


@dataclass
class Summary:
    """What a run did, for the closing report."""

    kind: str
    inputs: int
    written: int = 0
    skipped: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    # Per error code, the message most records with that code got (the service's text, with valid values).
    messages: dict[str, str] = field(default_factory=dict)
    outputs: list[str] = field(default_factory=list)
    captions: int = 0  # caption files written, under captions_dir
    captions_dir: str = ""
    wall_seconds: float = 0.0
    sessions: str = ""  # how the job sized its session pools, and why
    max_dead_letter_fraction: float = DEFAULT_MAX_DEAD_LETTER_FRACTION
    notes: list[str] = field(default_factory=list)  # more lines for the report (a stream's figures)

    @property
    def failed(self) -> int:
        return sum(self.dead_letters.values())

    def exit_code(self) -> int:
        """0 within the allowed share of dead letters, 4 when every record failed, 3 otherwise."""
        processed = self.written + self.failed
        if not processed or self.failed <= self.max_dead_letter_fraction * processed:
            return EXIT_OK
        return EXIT_ALL_FAILED if not self.written else EXIT_TOO_MANY_DEAD_LETTERS

    def top_error(self) -> str | None:
        """The commonest dead-letter code with its message, e.g. ``UNSUPPORTED_LANGUAGE (5 of 5 records): ...``."""
        if not self.dead_letters:
            return None
        code, n = self.dead_letters.most_common(1)[0]
        message = self.messages.get(code, "").removeprefix(f"{code}: ")
        if len(message) > _MESSAGE_CHARS:
            message = message[: _MESSAGE_CHARS - 3] + "..."
        return f"{code} ({n} of {self.written + self.failed} records): {message}".rstrip(": ")

    def verdict(self) -> str | None:
        """One line for stderr when the exit status is not 0."""
        status = self.exit_code()
        if status == EXIT_OK:
            return None
        processed = self.written + self.failed
        share = f"{self.failed} of {processed} records failed"
        if status == EXIT_TOO_MANY_DEAD_LETTERS:
            share += f", more than --max_dead_letter_fraction {self.max_dead_letter_fraction:g} allows"
        return f"error: {share}; top error: {self.top_error()}"

    def lines(self) -> list[str]:
        out = [f"{self.kind}: {self.written} rows written, {self.failed} dead letters"]
        if self.skipped:
            out.append(f"skipped (unchanged since earlier runs): {self.skipped}")
        for code, n in sorted(self.dead_letters.items()):
            out.append(f"  dead letters {code}: {n}")
        top = self.top_error()
        if top:
            out.append(f"  top error: {top}")
        for path in self.outputs:
            out.append(f"  output: {path}")
        if self.captions:
            out.append(f"  captions: {self.captions} files under {self.captions_dir}")
        if self.sessions:
            out.append(f"  sessions: {self.sessions}")
        out.extend(self.notes)
        out.append(f"wall time: {self.wall_seconds:.1f} s")
        return out
