"""Atomic writes: a temp file or folder beside the target, renamed into place when complete."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike):
    """Yield a temp file name beside ``path``; on success it is renamed to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from the rest of the group
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_csv_atomic(df, path: str | os.PathLike) -> Path:
    """Write a DataFrame (NaN as empty cells) atomically to ``path``."""
    with atomic_file(path) as tmp:
        with open(tmp, "w", newline="") as handle:
            df.to_csv(handle, index=False, na_rep="")
    return Path(path)


@contextlib.contextmanager
def atomic_directory(out_dir: str | os.PathLike):
    """Yield a hidden temp folder beside ``out_dir``; on success it replaces ``out_dir``.

    A killed or failed job leaves no folder under the final name, only a hidden temp one.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o755)  # mkdtemp's 0700 would hide results from the rest of the group
        if out.exists():
            trash = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, trash / out.name)
            os.replace(tmp, out)
            shutil.rmtree(trash)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> Path:
    """Write ``data`` atomically to ``path`` (checkpoints, rendered figures, JSON markers)."""
    with atomic_file(path) as tmp:
        Path(tmp).write_bytes(data)
    return Path(path)
