"""constraints.txt: the exact versions the suite passed with, and how an environment differs from them.

    python3 .ci/constraints.py update        resolve the newest releases setup.py allows (every extra) in a
                                             fresh virtual environment, write constraints.txt, print what changed
    python3 .ci/constraints.py diff PYTHON   how the environment of interpreter PYTHON differs from constraints.txt

setup.py keeps ranges (voxbeam goes into users' own Beam environments); installs that must be
reproducible (the README's commands, .ci/run, the images) add ``-c constraints.txt``. After
``update``, run the suite on the new set before committing it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONSTRAINTS = os.path.join(ROOT, "constraints.txt")
HEADER = """\
# Exact versions of everything `pip install -e '.[all,test]'` resolved when the suite last passed.
# Installs that must be reproducible use it: pip install -c constraints.txt -e '.[test]'
# Regenerate with `python3 .ci/constraints.py update` (it prints what changed), then run the suite.
"""
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)$")


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(text: str) -> dict[str, tuple[str, str]]:
    """{normalised name: (name as written, version)} of every ``name==version`` line."""
    pins = {}
    for line in text.splitlines():
        found = _PIN.match(line.strip())
        if found:
            pins[_key(found.group(1))] = (found.group(1), found.group(2))
    return pins


def freeze(python: str) -> dict[str, tuple[str, str]]:
    """What ``python``'s environment has installed (voxbeam itself and pip's own tools left out)."""
    out = subprocess.run(
        [python, "-m", "pip", "freeze", "--exclude-editable"], check=True, capture_output=True, text=True
    ).stdout
    return {k: v for k, v in read_pins(out).items() if k != "voxbeam"}


def changes(old: dict[str, tuple[str, str]], new: dict[str, tuple[str, str]]) -> list[str]:
    """One line per package added, removed or at another version."""
    lines = []
    for key in sorted(old.keys() | new.keys()):
        if key not in new:
            lines.append(f"  - {old[key][0]} {old[key][1]} (no longer installed)")
        elif key not in old:
            lines.append(f"  + {new[key][0]} {new[key][1]} (not in constraints.txt)")
        elif old[key][1] != new[key][1]:
            lines.append(f"  ~ {new[key][0]} {old[key][1]} -> {new[key][1]}")
    return lines


def current() -> dict[str, tuple[str, str]]:
    if not os.path.exists(CONSTRAINTS):
        return {}
    with open(CONSTRAINTS, encoding="utf-8") as fh:
        return read_pins(fh.read())


def update() -> int:
    with tempfile.TemporaryDirectory(prefix="voxbeam-constraints-") as tmp:
        venv.create(tmp, with_pip=True)
        python = os.path.join(tmp, "bin", "python")
        subprocess.run([python, "-m", "pip", "install", "-q", f"{ROOT}[all,test]"], check=True)
        new = freeze(python)
    old = current()
    with open(CONSTRAINTS, "w", encoding="utf-8") as fh:
        fh.write(HEADER)
        fh.writelines(f"{name}=={version}\n" for _, (name, version) in sorted(new.items()))
    diff = changes(old, new)
    print("constraints.txt: " + (f"{len(diff)} changes" if diff else "unchanged"))
    print("\n".join(diff))
    return 0


def diff(python: str) -> int:
    lines = changes(current(), freeze(python))
    print(f"installed vs constraints.txt: {len(lines)} differences" + (":" if lines else ""))
    if lines:
        print("\n".join(lines))
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["update"] and len(argv) == 1:
        return update()
    if argv[:1] == ["diff"] and len(argv) == 2:
        return diff(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
