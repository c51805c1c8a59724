"""Reading ``torch.save`` checkpoints without torch: a state dict as numpy arrays.

The unpickler resolves only the few names a state dict needs (OrderedDict, tensors and their
storages) and never calls anything the file names; anything else is refused with ``ModelError``.
Both the zip format (torch >= 1.6) and the legacy one are read.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voxbeam.server.errors import ModelError

_DTYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass(frozen=True)
class _StorageType:
    """Stands for ``torch.<Name>Storage``: a dtype, and not callable, so a REDUCE on it fails."""

    dtype: np.dtype[Any]


@dataclass
class _Storage:
    key: str
    dtype: np.dtype[Any]
    numel: int
    data: np.ndarray | None = None  # filled from the file, after the pickle for the legacy format


@dataclass(frozen=True)
class _TensorRef:
    """What ``torch._utils._rebuild_tensor_v2`` would have built, resolved once storages are read."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ModelError(f"storage {self.storage.key} of a tensor was never read")
        if self.shape and any(n > 0 for n in self.shape):
            last = self.offset + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True))
            if self.offset < 0 or last >= data.size:
                raise ModelError(f"a tensor reaches past the end of storage {self.storage.key}")
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :],
            shape=self.shape,
            strides=tuple(s * data.itemsize for s in self.stride),
            writeable=False,
        )
        return np.array(view)  # a copy: contiguous, and no longer tied to the whole storage


def _rebuild_tensor_v2(
    storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    # The rest (requires_grad, backward hooks, metadata) means nothing to inference.
    if not isinstance(storage, _Storage):
        raise pickle.UnpicklingError("a tensor without a storage")
    return _TensorRef(storage, int(offset), tuple(int(n) for n in shape), tuple(int(s) for s in stride))


class _StateUnpickler(pickle.Unpickler):
    """Resolves only an OrderedDict, the tensor rebuild function (ours, not torch's) and storage types."""

    def __init__(self, file: Any, storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _DTYPES:
            return _StorageType(_DTYPES[name])
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weights file")

    def persistent_load(self, pid: Any) -> _Storage:
        # Zip format: ('storage', type, key, location, numel); legacy adds view metadata (always None here).
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError("a storage of an unknown type")
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        known = self._storages.setdefault(key, _Storage(key, storage_type.dtype, numel))
        if known.dtype != storage_type.dtype:
            raise pickle.UnpicklingError(f"storage {key} is read with two dtypes")
        return known


def _resolve(obj: Any) -> Any:
    """The unpickled object with every tensor replaced by its numpy array."""
    if isinstance(obj, _TensorRef):
        return obj.array()
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, list):
        return [_resolve(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v) for v in obj)
    return obj


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") and n.count("/") == 1), None)
        if pkl is None:
            raise ModelError(f"{path}: a zip without data.pkl is not a torch checkpoint")
        prefix = pkl[: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise ModelError(f"{path}: big-endian checkpoints are not supported")
        storages: dict[str, _Storage] = {}
        obj = _StateUnpickler(io.BytesIO(archive.read(pkl)), storages).load()
        for s in storages.values():
            raw = archive.read(f"{prefix}data/{s.key}")
            if len(raw) < s.numel * s.dtype.itemsize:
                raise ModelError(f"{path}: storage {s.key} is shorter than its tensors")
            s.data = np.frombuffer(raw, dtype=s.dtype, count=s.numel)
    return obj


def _load_legacy(path: Path) -> Any:
    # torch < 1.6: magic number, protocol version, system info, the object, its storage keys, then
    # each storage as a little-endian int64 element count followed by the raw elements.
    with open(path, "rb") as fh:
        header = _StateUnpickler(fh, {})
        if header.load() != _LEGACY_MAGIC:
            raise ModelError(f"{path}: not a torch checkpoint (bad magic number)")
        header.load()  # protocol version
        info = header.load()
        if not isinstance(info, dict) or info.get("little_endian") is not True:
            raise ModelError(f"{path}: big-endian checkpoints are not supported")
        storages: dict[str, _Storage] = {}
        obj = _StateUnpickler(fh, storages).load()
        keys = _StateUnpickler(fh, {}).load()
        if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(storages):
            raise ModelError(f"{path}: the storage list does not match the tensors")
        for key in map(str, keys):
            s = storages[key]
            (count,) = struct.unpack("<q", fh.read(8))
            raw = fh.read(count * s.dtype.itemsize)
            if count < s.numel or len(raw) != count * s.dtype.itemsize:
                raise ModelError(f"{path}: storage {key} is truncated")
            s.data = np.frombuffer(raw, dtype=s.dtype, count=s.numel)
    return obj


def load_torch_state(path: str | os.PathLike[str]) -> Any:
    """A ``torch.save``d object of dicts, lists and tensors, with tensors as numpy arrays; no torch needed.

    Reads both the zip format (torch >= 1.6) and the legacy one. Anything in the pickle beyond
    OrderedDict, tensors and their storages is refused with ``ModelError``.
    """
    path = Path(path)
    try:
        return _resolve(_load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path))
    except (pickle.UnpicklingError, EOFError, struct.error, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable torch checkpoint: {exc}") from None
