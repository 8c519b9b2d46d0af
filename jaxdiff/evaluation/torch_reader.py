"""Read tensors out of PyTorch files without torch and without running their code.

PyTorch files are pickles. ``pickle.load`` on such a file may import and call anything, so
this module uses a restricted :class:`pickle.Unpickler` whose ``find_class`` resolves only
a short allow-list (the tensor rebuild functions, storage types, ``OrderedDict`` and
TorchScript's inert ``__torch__.*`` module records); every other global raises
:class:`UnsafePickleError`. Tensors come back as numpy arrays.

Two container formats are read:

* the zip format of ``torch.save`` (torch >= 1.6) and ``torch.jit.save``: ``<prefix>/data.pkl``
  plus one raw little-endian file per storage in ``<prefix>/data/<key>``;
* the legacy format of ``torch.save(..., _use_new_zipfile_serialization=False)`` (pytorch-fid's
  ``pt_inception-2015-12-05-6726825d.pth`` is one): a magic-number pickle, a protocol pickle,
  a system-info pickle, the object pickle, the storage-key list, then each storage's bytes.

Example::

  arrays = read_tensors("default_1.pt")   # {"net.layers.conv.weight": np.ndarray, ...}
"""

import collections
import io
import pickle
import zipfile
from collections.abc import Mapping
from typing import Any, BinaryIO

import numpy as np

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
    "UntypedStorage": np.uint8,
}


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle asked for a global outside the allow-list (it could run code)."""


class _StorageType:
    """Stands in for ``torch.FloatStorage`` and friends: it only carries a numpy dtype."""

    def __init__(self, dtype: type):
        self.dtype = np.dtype(dtype)


class _StorageRef:
    """A storage named in the pickle; its bytes are attached after unpickling."""

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel
        self.data: np.ndarray | None = None


class _StorageView:
    """A slice of a storage (legacy files only); looks like a storage to ``_LazyTensor``."""

    def __init__(self, root: _StorageRef, offset: int, size: int):
        self.root, self.offset, self.size, self.key = root, offset, size, root.key

    @property
    def data(self) -> np.ndarray | None:
        data = self.root.data
        return None if data is None else data[self.offset : self.offset + self.size]


class _LazyTensor:
    """A strided view of a storage, materialised once the storage bytes are known."""

    def __init__(
        self, storage: _StorageRef | _StorageView, offset: int, size: tuple, stride: tuple
    ):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def materialize(self) -> np.ndarray:
        data = self.storage.data
        if data is None:
            raise ValueError(f"storage {self.storage.key!r} has no data in the file")
        if not self.size:
            return np.array(data[self.offset])
        extent = sum((n - 1) * s for n, s in zip(self.size, self.stride, strict=True))
        need = self.offset + extent + 1
        if need > data.size:
            raise ValueError(f"tensor view needs {need} elements, storage has {data.size}")
        item = data.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            data[self.offset :], shape=self.size, strides=[s * item for s in self.stride]
        )
        return np.array(view)


class ScriptRecord:
    """An inert stand-in for a TorchScript module object (``__torch__.*``): attributes only."""

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, dict):
            raise UnsafePickleError(f"TorchScript record state must be a dict, got {type(state)}")
        self.__dict__.update(state)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, meta=None):
    del requires_grad, hooks, meta
    if not isinstance(storage, _StorageRef | _StorageView):
        raise UnsafePickleError("tensor rebuilt from something that is not a file storage")
    return _LazyTensor(storage, int(offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    del requires_grad, hooks
    return data


_ALLOWED = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
}


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only allow-listed globals and records storages lazily."""

    def __init__(self, file: BinaryIO):
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return _StorageType(STORAGE_DTYPES[name])
        if module.startswith("__torch__") and name.isidentifier():
            return ScriptRecord
        raise UnsafePickleError(
            f"refusing to load global {module}.{name}: only tensors, storages, OrderedDict "
            "and TorchScript module records are allowed"
        )

    def persistent_load(self, pid: Any) -> "_StorageRef | _StorageView":
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafePickleError(f"unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise UnsafePickleError(f"unexpected storage type {storage_type!r}")
        if key not in self.storages:
            self.storages[key] = _StorageRef(key, storage_type.dtype, numel)
        view = pid[5] if len(pid) > 5 else None
        if view is None:
            return self.storages[key]
        _, offset, size = view  # legacy (torch < 1.0) storage views: (view_key, offset, size)
        return _StorageView(self.storages[key], int(offset), int(size))


def _flatten(obj: Any, prefix: str, out: dict[str, Any]) -> None:
    """Collects every tensor in ``obj`` under a dotted name."""
    if isinstance(obj, _LazyTensor):
        out[prefix] = obj
    elif isinstance(obj, ScriptRecord):
        for k, v in obj.__dict__.items():
            _flatten(v, f"{prefix}.{k}" if prefix else k, out)
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)


def _read_zip(zf: zipfile.ZipFile) -> tuple[Any, RestrictedUnpickler]:
    pkl = [n for n in zf.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(pkl) != 1:
        raise ValueError(f"expected one <prefix>/data.pkl in the zip, found {pkl}")
    prefix = pkl[0].rsplit("/", 1)[0]
    unpickler = RestrictedUnpickler(io.BytesIO(zf.read(pkl[0])))
    obj = unpickler.load()
    for key, ref in unpickler.storages.items():
        raw = zf.read(f"{prefix}/data/{key}")
        ref.data = np.frombuffer(raw, dtype=ref.dtype.newbyteorder("<")).astype(ref.dtype)
    return obj, unpickler


def _read_legacy(f: BinaryIO) -> tuple[Any, RestrictedUnpickler]:
    magic = RestrictedUnpickler(f).load()
    if magic != _LEGACY_MAGIC:
        raise ValueError("not a PyTorch file: neither a zip archive nor the legacy magic number")
    if RestrictedUnpickler(f).load() != _LEGACY_PROTOCOL:
        raise ValueError("unsupported legacy PyTorch protocol version")
    RestrictedUnpickler(f).load()  # system info (endianness, type sizes)
    unpickler = RestrictedUnpickler(f)
    obj = unpickler.load()
    keys = RestrictedUnpickler(f).load()
    for key in keys:
        ref = unpickler.storages[str(key)]
        numel = int(np.frombuffer(f.read(8), "<i8")[0])
        raw = f.read(numel * ref.dtype.itemsize)
        ref.data = np.frombuffer(raw, dtype=ref.dtype.newbyteorder("<")).astype(ref.dtype)
    return obj, unpickler


def read_tensors(source: str | bytes | BinaryIO) -> dict[str, np.ndarray]:
    """Reads every tensor of a PyTorch file (state dict, checkpoint or TorchScript archive).

    Args:
      source: a path, the file's bytes, or a binary file object (seekable).

    Returns:
      A dict from dotted names (``"net.layers.conv.weight"``, ``"Mixed_5b.branch1x1.conv.weight"``)
      to numpy arrays, in the file's dtypes.

    Raises:
      UnsafePickleError: the pickle names a global outside the allow-list.
      ValueError: the file is neither a zip nor a legacy PyTorch file, or is truncated.
    """
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    if isinstance(source, str):
        with open(source, "rb") as f:
            return read_tensors(io.BytesIO(f.read()))
    if zipfile.is_zipfile(source):
        source.seek(0)
        with zipfile.ZipFile(source) as zf:
            obj, _ = _read_zip(zf)
    else:
        source.seek(0)
        obj, _ = _read_legacy(source)
    lazy: dict[str, Any] = {}
    _flatten(obj, "", lazy)
    return {name: t.materialize() for name, t in lazy.items()}
