"""Issue 24: installs are reproducible (constraints.txt) and setup.py's ranges say what was tested."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.strip().split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    return pins


def setup_requirements() -> list[Requirement]:
    """Every requirement string in setup.py's lists (install_requires and every extra)."""
    tree = ast.parse((ROOT / "setup.py").read_text(encoding="utf-8"))
    found = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return [Requirement(s) for s in found if re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]*(\[\w+\])?\s*(>=|==|<)", s)]


def test_every_install_command_uses_the_constraints():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if "pip install" in line and line.lstrip().startswith("python3")]
    assert len(commands) >= 2, "the README's two fresh-machine commands"
    for command in commands:
        assert "-c constraints.txt" in command, command
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"\.venv/bin/pip install -q (--no-compile )?-c constraints\.txt -e '\.\[test\]'", ci)


def test_constraints_pin_a_version_setup_py_allows_for_every_requirement():
    pins = constraints()
    requirements = setup_requirements()
    assert len(requirements) > 20
    for req in requirements:
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        assert key in pins, f"{req.name} is not in constraints.txt: regenerate it (.ci/constraints.py update)"
        assert req.specifier.contains(pins[key]), f"constraints.txt pins {req.name} {pins[key]}, outside {req}"


def test_lower_bounds_are_the_tested_releases():
    """A lower bound below what the suite ran on would claim support nobody tested: raise it with the constraints."""
    pins = constraints()
    for req in setup_requirements():
        lower = [s.version for s in req.specifier if s.operator in (">=", "==")]
        assert lower, f"{req} has no lower bound"
        tested = pins[re.sub(r"[-_.]+", "-", req.name).lower()]
        assert lower[0] == tested, f"{req}: the suite runs on {tested}; make the lower bound {tested}"


def test_upper_bounds_stop_at_the_next_major_version():
    for req in setup_requirements():
        upper = [s.version for s in req.specifier if s.operator == "<"]
        if not upper:  # an exact pin, or calendar versions (gcp-storage-emulator) where a major means nothing
            continue
        lower = next(s.version for s in req.specifier if s.operator in (">=", "==")).split(".")
        # Before 1.0 a minor release may break as a major one does: either bound is a true one.
        expected = {str(int(lower[0]) + 1)} if lower[0] != "0" else {"1", f"0.{int(lower[1]) + 1}"}
        assert upper[0] in expected, f"{req}: the next major version is {' or '.join(sorted(expected))}"
