"""Where VoxBeam reads and writes objects: gs:// through google-cloud-storage, the rest through Beam.

google-cloud-storage gives us object generations (for incremental runs), content types, custom
metadata and create-only writes, which Beam's FileSystems does not expose.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import posixpath
import re
import threading
import uuid
from dataclasses import dataclass
from typing import IO, Any

from apache_beam.io.filesystem import CompressionTypes, FileSystem
from apache_beam.io.filesystems import FileSystems

_WILDCARDS = "*?["
_lock = threading.Lock()


@dataclass(frozen=True)
class SourceFile:
    """One input object: where it is and which version of it we saw."""

    uri: str
    size: int
    version: str  # GCS generation, or mtime in seconds elsewhere


def is_gcs(uri: str) -> bool:
    return uri.startswith("gs://")


def split_gcs(uri: str) -> tuple[str, str]:
    bucket, _, name = uri[len("gs://") :].partition("/")
    return bucket, name


def join(prefix: str, *parts: str) -> str:
    if "://" in prefix:
        return posixpath.join(prefix, *parts)
    return os.path.join(prefix, *parts)


def emulator_host() -> str | None:
    return os.environ.get("STORAGE_EMULATOR_HOST") or None


@functools.lru_cache(maxsize=1)
def gcs_client() -> Any:
    """A process-wide storage client; anonymous against an emulator (no credential lookup)."""
    from google.cloud import storage  # type: ignore[attr-defined]

    if emulator_host():
        configure_beam_for_emulator()
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", "voxbeam-local"), credentials=AnonymousCredentials()
        )
    return storage.Client()


def configure_beam_for_emulator() -> None:
    """Make Beam's own GCS filesystem use an anonymous client when an emulator is configured (else nothing).

    Without credentials Beam spends ~30 s probing for them; an emulator accepts anonymous
    requests and google-cloud-storage already routes them to STORAGE_EMULATOR_HOST.
    """
    if not emulator_host():
        return
    try:
        from apache_beam.internal.gcp import auth
    except ImportError:  # Beam without the gcp extra: nothing to configure
        return
    with _lock:
        creds = auth._Credentials
        if not creds._credentials_init:
            creds._credentials = None
            creds._credentials_init = True


def stat(uri: str) -> SourceFile:
    """Size and version of one object; FileNotFoundError when it is not there."""
    if is_gcs(uri):
        bucket, name = split_gcs(uri)
        blob = gcs_client().bucket(bucket).get_blob(name)
        if blob is None:
            raise FileNotFoundError(f"no such object: {uri}")
        return SourceFile(uri, int(blob.size or 0), str(blob.generation))
    meta = FileSystems.match([uri])[0].metadata_list
    if not meta:
        raise FileNotFoundError(f"no such file: {uri}")
    m = meta[0]
    return SourceFile(uri, int(m.size_in_bytes), f"{float(m.last_updated_in_seconds or 0.0):.6f}")


def open_read(uri: str) -> IO[bytes]:
    """A seekable binary reader (PyAV seeks to find container headers)."""
    if is_gcs(uri):
        bucket, name = split_gcs(uri)
        blob = gcs_client().bucket(bucket).blob(name)
        return blob.open("rb", chunk_size=1 << 20)
    return FileSystems.open(uri, compression_type=CompressionTypes.UNCOMPRESSED)


def match(pattern: str) -> list[SourceFile]:
    """Expand a glob, a directory (every file below it) or a single path to source files."""
    if is_gcs(pattern):
        return _match_gcs(pattern)
    if "://" not in pattern and os.path.isdir(pattern):
        pattern = os.path.join(pattern, "**")
    found: list[SourceFile] = []
    for result in FileSystems.match([pattern]):
        for m in result.metadata_list:
            if "://" not in m.path and os.path.isdir(m.path):
                continue
            found.append(SourceFile(m.path, int(m.size_in_bytes), f"{float(m.last_updated_in_seconds or 0.0):.6f}"))
    return sorted(found, key=lambda s: s.uri)


def _match_gcs(pattern: str) -> list[SourceFile]:
    bucket, name = split_gcs(pattern)
    cut = min((name.find(c) for c in _WILDCARDS if c in name), default=-1)
    prefix = name if cut < 0 else name[:cut]
    # Beam's glob semantics: * and ? stay within one path segment, ** crosses them.
    regex = re.compile(FileSystem.translate_pattern(name))
    out = []
    for blob in gcs_client().list_blobs(bucket, prefix=prefix):
        if blob.name.endswith("/"):
            continue
        if cut < 0:
            # A plain name matches itself or, as a folder, everything below it.
            if blob.name != name and not blob.name.startswith(name.rstrip("/") + "/"):
                continue
        elif not regex.match(blob.name):
            continue
        out.append(SourceFile(f"gs://{bucket}/{blob.name}", int(blob.size or 0), str(blob.generation)))
    return sorted(out, key=lambda s: s.uri)


def read_bytes(uri: str) -> bytes:
    with open_read(uri) as fh:
        return fh.read()


def write_object(uri: str, data: bytes, *, content_type: str, metadata: dict[str, str] | None = None) -> bool:
    """Write one whole object atomically and idempotently; False if the same bytes were there.

    gs:// writes are create-only (if_generation_match=0): a retried bundle finds the object an
    earlier attempt wrote and, when its MD5 matches, leaves it alone. GCS uploads are atomic,
    so nobody sees a torn object. Elsewhere the bytes go to a temporary name first and are
    renamed into place.
    """
    metadata = dict(metadata or {})
    if is_gcs(uri):
        from google.api_core.exceptions import PreconditionFailed

        bucket, name = split_gcs(uri)
        blob = gcs_client().bucket(bucket).blob(name)
        blob.metadata = metadata
        try:
            blob.upload_from_string(data, content_type=content_type, if_generation_match=0)
            return True
        except PreconditionFailed:
            current = gcs_client().bucket(bucket).get_blob(name)
            if current is not None and current.md5_hash == base64.b64encode(hashlib.md5(data).digest()).decode():
                return False
            # Same name, different bytes (the record changed): replace it, still in one atomic upload.
            blob.upload_from_string(data, content_type=content_type)
            return True
    tmp = f"{uri}.tmp-{uuid.uuid4().hex[:12]}"
    if "://" not in uri:  # a local path: plain file calls (Beam's FileSystems cost more per object)
        os.makedirs(os.path.dirname(os.path.abspath(uri)), exist_ok=True)
        try:
            with open(tmp, "wb") as out:
                out.write(data)
            os.replace(tmp, uri)
        except BaseException:
            with contextlib.suppress(OSError):
                os.remove(tmp)
            raise
        return True
    with FileSystems.create(tmp, mime_type=content_type, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.write(data)
    try:
        if FileSystems.exists(uri):
            FileSystems.delete([uri])
        FileSystems.rename([tmp], [uri])
    except Exception:
        FileSystems.delete([tmp])
        raise
    return True
