"""Atomic, checksummed HDF5: round trip, determinism, rejection of damaged files by name."""

import os

import numpy as np
import pytest

from thincam.data.h5io import atomic_write_h5, read_h5
from thincam.errors import CorruptFileError


def _write(path):
    return atomic_write_h5(
        path,
        {"y": np.arange(24, dtype=np.float32).reshape(2, 3, 4), "index": np.array([3, 7])},
        attrs={"dataset": "demo", "operator": {"kind": "lensless", "pinv": {"kind": "tikhonov", "lam": 0.01}}},
        contract="dataset",
    )


def test_round_trip_and_same_bytes(tmp_path):
    a, b = _write(tmp_path / "a.h5"), _write(tmp_path / "b.h5")
    arrays, attrs = read_h5(a, contract="dataset")
    assert arrays["y"].shape == (2, 3, 4) and list(arrays["index"]) == [3, 7]
    assert attrs["dataset"] == "demo"
    assert a.read_bytes() == b.read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_bit_flip_is_rejected_by_name(tmp_path):
    path = _write(tmp_path / "flip.h5")
    data = bytearray(path.read_bytes())
    arrays, _ = read_h5(path)
    needle = arrays["y"].tobytes()
    pos = bytes(data).find(needle)
    assert pos > 0
    data[pos + 5] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="flip.h5.*checksum mismatch"):
        read_h5(path)


def test_truncated_file_is_rejected_by_name(tmp_path):
    path = _write(tmp_path / "cut.h5")
    size = path.stat().st_size
    with open(path, "r+b") as handle:
        handle.truncate(size // 2)
    with pytest.raises(CorruptFileError, match="cut.h5"):
        read_h5(path)


def test_wrong_contract_and_missing_dataset(tmp_path):
    path = _write(tmp_path / "d.h5")
    with pytest.raises(CorruptFileError, match="expected a 'recon' file"):
        read_h5(path, contract="recon")
    with pytest.raises(CorruptFileError, match="'xhat' is missing"):
        read_h5(path, names=["xhat"])


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(TypeError):
        atomic_write_h5(tmp_path / "bad.h5", {"obj": np.array([object()])})
    assert os.listdir(tmp_path) == []
