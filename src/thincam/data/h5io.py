"""Atomic, checksummed HDF5 files: the only way thincam writes and reads its array outputs.

A file is written to a temporary name in the destination folder and renamed into place, so a
killed job never leaves a file under the final name. Every dataset's SHA-256 is stored in the
root attributes (``sha256/<name>``); readers recompute it and reject a file that does not match,
naming it. Attributes are written in sorted order with fixed HDF5 settings and a fixed
``track_times=False``, so the same arrays and attributes give the same bytes. Outputs larger than
memory are written row by row (:func:`streaming_h5`), with a SHA-256 per block of rows as well, so
:func:`read_rows` can read and verify a few blocks without reading the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from thincam.data.atomic import atomic_file
from thincam.errors import CorruptFileError

CHECKSUM_PREFIX = "sha256/"
# Streamed files also hash every block of this many rows (attribute ``sha256_blocks/<name>``), so
# a reader of a few rows verifies those blocks only (:func:`read_rows`).
BLOCK_ROWS = 256
BLOCK_PREFIX = "sha256_blocks/"
CONTRACT_ATTR = "thincam_contract"


def array_sha256(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and C-ordered bytes."""
    array = np.ascontiguousarray(array)
    digest = hashlib.sha256()
    digest.update(str(array.dtype.str).encode())
    digest.update(str(array.shape).encode())
    digest.update(array.reshape(-1).view(np.uint8))  # no copy: hashing bounds shard writes
    return digest.hexdigest()


def _attr_value(value: Any) -> Any:
    """HDF5-storable form of an attribute: dicts and lists of mixed types become JSON."""
    if isinstance(value, (dict, list, tuple)) and not (
        isinstance(value, (list, tuple)) and value and all(isinstance(v, (int, float)) for v in value)
    ):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return "null"
    return value


def atomic_write_h5(
    path: str | os.PathLike,
    datasets: Mapping[str, np.ndarray],
    attrs: Mapping[str, Any] | None = None,
    contract: str | None = None,
) -> Path:
    """Write ``datasets`` and ``attrs`` to ``path`` atomically, with per-dataset checksums."""
    import h5py

    path = Path(path)
    arrays = {name: np.asarray(datasets[name]) for name in sorted(datasets)}
    for name, array in arrays.items():
        if not array.dtype.isbuiltin and array.dtype.kind not in "SUO":
            raise TypeError(f"dataset {name!r} has unsupported dtype {array.dtype}")
    # hashlib releases the GIL: the datasets hash in parallel threads beside the HDF5 writes
    # (SHA-256 at ~1.8 GB/s a core is the bottleneck; bench/h5_write_throughput.py). Datasets
    # and attributes keep their order, so the bytes do not depend on the thread timing.
    workers = max(1, min(len(arrays), len(os.sched_getaffinity(0))))  # the cores a job was given
    with ThreadPoolExecutor(max_workers=workers) as hasher, atomic_file(path) as tmp_name:
        digests = {name: hasher.submit(array_sha256, array) for name, array in arrays.items()}
        with h5py.File(tmp_name, "w", track_order=True) as handle:
            for name, array in arrays.items():
                handle.create_dataset(name, data=array, track_times=False)
                handle.attrs[CHECKSUM_PREFIX + name] = digests[name].result()
            for key in sorted(attrs or {}):
                handle.attrs[key] = _attr_value(attrs[key])
            if contract is not None:
                handle.attrs[CONTRACT_ATTR] = contract
    return path


class RowWriter:
    """Rows of one dataset of known shape, appended in order, hashed as they arrive.

    The digest equals :func:`array_sha256` of the whole array (dtype, shape, then the C-ordered
    bytes, row after row), so a streamed file verifies exactly like one written at once.
    """

    def __init__(self, handle, name: str, shape: tuple[int, ...], dtype) -> None:
        self.dataset = handle.create_dataset(name, shape=shape, dtype=dtype, track_times=False)
        self.name, self.shape, self.dtype = name, tuple(shape), np.dtype(dtype)
        self.digest = hashlib.sha256()
        self.digest.update(str(self.dtype.str).encode())
        self.digest.update(str(self.shape).encode())
        self.blocks: list[str] = []
        self.block = hashlib.sha256()
        self.filled = 0

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or self.filled + len(rows) > self.shape[0]:
            raise ValueError(f"dataset {self.name!r}: rows {rows.shape} do not fit {self.shape} at row {self.filled}")
        self.dataset[self.filled : self.filled + len(rows)] = rows
        self.digest.update(rows.reshape(-1).view(np.uint8))
        start = 0
        while start < len(rows):  # split the rows at block boundaries
            take = min(len(rows) - start, BLOCK_ROWS - self.filled % BLOCK_ROWS)
            self.block.update(rows[start : start + take].reshape(-1).view(np.uint8))
            self.filled += take
            start += take
            if self.filled % BLOCK_ROWS == 0 or self.filled == self.shape[0]:
                self.blocks.append(self.block.hexdigest())
                self.block = hashlib.sha256()


@contextlib.contextmanager
def streaming_h5(
    path: str | os.PathLike,
    shapes: Mapping[str, tuple[tuple[int, ...], Any]],
    contract: str | None = None,
):
    """Yield ``(writers, attrs)`` for an HDF5 file written row by row: ``writers[name].append``
    each dataset's rows in order, fill the ``attrs`` dict; on leaving, every dataset must be full,
    the checksums and attributes are written and the file is renamed into place.

    For outputs larger than memory (a release's captures): only one chunk of rows is held at once.
    :func:`read_h5` verifies it like a file of :func:`atomic_write_h5`; the same rows and
    attributes give the same bytes.
    """
    import h5py

    attrs: dict[str, Any] = {}
    with atomic_file(path) as tmp_name, h5py.File(tmp_name, "w", track_order=True) as handle:
        writers = {name: RowWriter(handle, name, *shapes[name]) for name in sorted(shapes)}
        yield writers, attrs
        for name, writer in writers.items():
            if writer.filled != writer.shape[0]:
                raise ValueError(f"{path}: dataset {name!r} has {writer.filled} of {writer.shape[0]} rows")
            handle.attrs[CHECKSUM_PREFIX + name] = writer.digest.hexdigest()
            handle.attrs[BLOCK_PREFIX + name] = json.dumps(writer.blocks)
        for key in sorted(attrs):
            handle.attrs[key] = _attr_value(attrs[key])
        if contract is not None:
            handle.attrs[CONTRACT_ATTR] = contract


def read_h5(
    path: str | os.PathLike,
    names: list[str] | None = None,
    verify: bool = True,
    contract: str | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Read datasets (all, or ``names``) and attributes, verifying checksums; read-only."""
    path = Path(path)
    handle, attrs = _open_checked(path, contract)
    with handle:
        wanted = list(handle.keys()) if names is None else names
        arrays = {}
        for name in wanted:
            if name not in handle:
                raise CorruptFileError(f"{path}: dataset {name!r} is missing")
            try:
                arrays[name] = handle[name][()]
            except (OSError, RuntimeError) as err:
                raise CorruptFileError(f"{path}: dataset {name!r} cannot be read ({err})") from err
            if verify:
                expected = attrs.get(CHECKSUM_PREFIX + name)
                if expected is None:
                    raise CorruptFileError(f"{path}: dataset {name!r} has no checksum")
                if array_sha256(arrays[name]) != expected:
                    raise CorruptFileError(f"{path}: checksum mismatch in dataset {name!r}")
    return arrays, _public(attrs)


def _open_checked(path: Path, contract: str | None):
    """(open read-only handle, decoded attributes), the file's contract checked."""
    import h5py

    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise CorruptFileError(f"{path}: not a readable HDF5 file ({err})") from err
    attrs = {key: _decode_attr(handle.attrs[key]) for key in handle.attrs}
    if contract is not None and attrs.get(CONTRACT_ATTR) != contract:
        handle.close()
        raise CorruptFileError(f"{path}: expected a {contract!r} file, found {attrs.get(CONTRACT_ATTR)!r}")
    return handle, attrs


def _public(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """The attributes without the checksums."""
    return {k: v for k, v in attrs.items() if not k.startswith((CHECKSUM_PREFIX, BLOCK_PREFIX))}


def read_rows(
    path: str | os.PathLike, names: list[str], rows: np.ndarray, contract: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``rows`` (sorted row numbers) of datasets ``names``, reading one block of
    :data:`BLOCK_ROWS` rows at a time and verifying each block it reads: memory holds the chosen
    rows and one block, not the file. A file without block checksums (written at once, hence
    small) is read whole and verified by :func:`read_h5`.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) > 1 and not (np.diff(rows) > 0).all():
        raise ValueError("read_rows needs strictly increasing row numbers")
    path = Path(path)
    handle, attrs = _open_checked(path, contract)
    with handle:
        if all(BLOCK_PREFIX + name in attrs for name in names):
            return {name: _verified_rows(path, handle, name, rows, attrs) for name in names}, _public(attrs)
    whole, _ = read_h5(path, names=names, contract=contract)
    return {name: whole[name][rows] for name in names}, _public(attrs)


def dataset_names(path: str | os.PathLike) -> list[str]:
    """The names of a file's datasets, without reading them."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return list(handle.keys())
    except OSError as err:
        raise CorruptFileError(f"{path}: not a readable HDF5 file ({err})") from err


def n_rows(path: str | os.PathLike, name: str) -> int:
    """The length of dataset ``name`` without reading it."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            return int(handle[name].shape[0])
    except (OSError, KeyError) as err:
        raise CorruptFileError(f"{path}: no readable dataset {name!r} ({err})") from err


def _verified_rows(path, handle, name: str, rows: np.ndarray, attrs: Mapping[str, Any]) -> np.ndarray:
    if name not in handle:
        raise CorruptFileError(f"{path}: dataset {name!r} is missing")
    dataset = handle[name]
    digests = json.loads(attrs[BLOCK_PREFIX + name])
    out = np.empty((len(rows), *dataset.shape[1:]), dtype=dataset.dtype)
    if len(rows) and (rows[0] < 0 or rows[-1] >= dataset.shape[0]):
        raise ValueError(f"{path}: rows outside 0..{dataset.shape[0] - 1} of {name!r}")
    for block in np.unique(rows // BLOCK_ROWS):
        start = int(block) * BLOCK_ROWS
        data = np.ascontiguousarray(dataset[start : start + BLOCK_ROWS])
        if hashlib.sha256(data.reshape(-1).view(np.uint8)).hexdigest() != digests[int(block)]:
            raise CorruptFileError(f"{path}: checksum mismatch in rows {start}.. of dataset {name!r}")
        chosen = (rows >= start) & (rows < start + BLOCK_ROWS)
        out[chosen] = data[rows[chosen] - start]
    return out


def _decode_attr(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def json_attr(attrs: Mapping[str, Any], key: str) -> Any:
    """Decode an attribute that :func:`atomic_write_h5` stored as JSON."""
    value = attrs[key]
    return json.loads(value) if isinstance(value, str) else value


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What a thincam HDF5 file holds: its contract, each dataset's shape and dtype, its
    attributes (provenance), and whether every checksum verifies (the file is read in full)."""
    import h5py

    try:
        with h5py.File(path, "r") as handle:
            shapes = {name: (tuple(handle[name].shape), str(handle[name].dtype)) for name in handle}
    except OSError as err:
        raise CorruptFileError(f"{path}: not a readable HDF5 file ({err})") from err
    try:
        _, attrs = read_h5(path)
        check = f"all {len(shapes)} dataset checksums verify"
    except CorruptFileError as err:
        _, attrs = read_h5(path, names=[], verify=False)
        check = f"FAILED: {err}"
    return {"contract": attrs.pop(CONTRACT_ATTR, None), "datasets": shapes, "attrs": attrs, "checks": check}
