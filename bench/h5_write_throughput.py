"""HDF5 shard write throughput of thincam.data.h5io.atomic_write_h5 against `dd` of the same bytes.

A realistic target shard: 3 float32 datasets (y, anchor, target) of 256 images x 3 x 64 x 64
(about 37.7 MB). atomic_write_h5 writes a temporary file, SHA-256s every dataset (in a thread,
overlapping the writes) and renames it into place, without fsync; `dd` writes the same number of
bytes to the same folder, also without fsync (conv=fsync on both with --fsync: atomic_write_h5 is
then followed by an os.fsync of the file, the way a caller that needs durability would do it). Median of --repeats runs each, after
one warm-up. Goal: atomic_write_h5 >= 50% of dd.

    .venv/bin/python bench/h5_write_throughput.py [--images 256] [--size 64] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from thincam.data.h5io import array_sha256, atomic_write_h5

GOAL = 0.5
NAMES = ("y", "anchor", "target")


def shard_arrays(images: int, channels: int, size: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    shape = (images, channels, size, size)
    return {name: rng.random(shape, dtype=np.float32) for name in NAMES}


def time_h5(folder: Path, arrays, repeats: int, fsync: bool) -> list[float]:
    times = []
    for i in range(repeats + 1):
        path = folder / f"shard-{i:04d}.h5"
        start = time.perf_counter()
        atomic_write_h5(path, arrays, attrs={"shard": i, "n_shards": repeats + 1}, contract="bench")
        if fsync:
            fd = os.open(path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)
        elapsed = time.perf_counter() - start
        path.unlink()
        if i:  # the first is a warm-up (h5py import paths, page cache)
            times.append(elapsed)
    return times


def time_h5py_only(folder: Path, arrays, repeats: int) -> float:
    """A plain h5py write of the same datasets (no checksums, no rename): the HDF5 part alone."""
    import h5py

    times = []
    for i in range(repeats + 1):
        path = folder / f"plain-{i:04d}.h5"
        start = time.perf_counter()
        with h5py.File(path, "w", track_order=True) as handle:
            for name in sorted(arrays):
                handle.create_dataset(name, data=arrays[name], track_times=False)
        elapsed = time.perf_counter() - start
        path.unlink()
        if i:
            times.append(elapsed)
    return statistics.median(times)


def time_sha(arrays, repeats: int) -> float:
    """The SHA-256 part of atomic_write_h5 alone (it hashes every dataset before writing)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for array in arrays.values():
            array_sha256(array)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def time_dd(folder: Path, n_bytes: int, repeats: int, fsync: bool) -> list[float]:
    """Seconds dd itself reports for writing n_bytes (process start-up not counted)."""
    times = []
    for i in range(repeats + 1):
        path = folder / f"dd-{i:04d}.bin"
        command = [
            "dd",
            "if=/dev/zero",
            f"of={path}",
            "bs=4M",
            f"count={n_bytes}",
            "iflag=count_bytes",
            *(["conv=fsync"] if fsync else []),
        ]
        done = subprocess.run(
            command, capture_output=True, text=True, env=dict(os.environ, LC_ALL="C"), check=True
        )
        match = re.search(r"(\d+) bytes .* copied, ([0-9.e+-]+) s", done.stderr)
        if not match or int(match.group(1)) != n_bytes:
            raise RuntimeError(f"unexpected dd output: {done.stderr!r}")
        path.unlink()
        if i:
            times.append(float(match.group(2)))
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--fsync", action="store_true", help="fsync both (dd conv=fsync)")
    parser.add_argument(
        "--dir",
        type=Path,
        default=None,
        help="folder on the filesystem to measure (default: a temporary folder in the repository)",
    )
    parser.add_argument("--check", action="store_true", help=f"exit 1 below {GOAL:.0%} of dd")
    args = parser.parse_args(argv)

    arrays = shard_arrays(args.images, args.channels, args.size)
    n_bytes = sum(a.nbytes for a in arrays.values())
    parent = args.dir or REPO
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".bench-h5-", dir=parent))
    try:
        h5 = statistics.median(time_h5(folder, arrays, args.repeats, args.fsync))
        dd = statistics.median(time_dd(folder, n_bytes, args.repeats, args.fsync))
        plain = time_h5py_only(folder, arrays, args.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sha = time_sha(arrays, args.repeats)

    mb = n_bytes / 1e6
    result = {
        "shard": f"{len(arrays)} x {args.images}x{args.channels}x{args.size}x{args.size} float32",
        "bytes": n_bytes,
        "fsync": args.fsync,
        "folder": str(parent),
        "atomic_write_h5_MBps": round(mb / h5, 1),
        "dd_MBps": round(mb / dd, 1),
        "ratio": round(dd / h5, 3),
        "h5py_only_MBps": round(mb / plain, 1),
        "sha256_MBps": round(mb / sha, 1),
        "sha256_alone_over_h5_time": round(sha / h5, 3),
        "goal_ratio": GOAL,
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }
    print(
        f"shard {result['shard']} = {mb:.1f} MB, fsync={'yes' if args.fsync else 'no'}, "
        f"folder {parent}, load average {result['load_avg_1min']}\n"
        f"  atomic_write_h5 {result['atomic_write_h5_MBps']:8.1f} MB/s  (median {h5 * 1e3:.1f} ms; "
        f"SHA-256 alone {sha * 1e3:.1f} ms, overlapped with the writes)\n"
        f"  h5py alone      {result['h5py_only_MBps']:8.1f} MB/s  (no checksums; median "
        f"{plain * 1e3:.1f} ms)\n"
        f"  SHA-256 alone   {result['sha256_MBps']:8.1f} MB/s\n"
        f"  dd              {result['dd_MBps']:8.1f} MB/s  (median {dd * 1e3:.1f} ms)\n"
        f"  ratio {result['ratio']:.2f} (goal >= {GOAL:.2f}): "
        f"{'PASS' if result['ratio'] >= GOAL else 'FAIL'}"
    )
    print(json.dumps(result))
    return 1 if args.check and result["ratio"] < GOAL else 0


if __name__ == "__main__":
    sys.exit(main())
