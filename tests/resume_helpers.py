"""Kill a training with SIGKILL once it has checkpointed, for the resume tests of every trainer.

Every run of a resume test (uninterrupted, killed, resumed) is a fresh Python with one torch
thread, so the three see the same floating-point kernels and their weights can be compared bit
for bit.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PREAMBLE = "import torch; torch.set_num_threads(1)\n"


def _env() -> dict:
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1"}


def run_python(code: str, timeout: float = 600) -> None:
    """Run ``code`` to the end in a fresh interpreter; its stderr is shown if it fails."""
    proc = subprocess.run(
        [sys.executable, "-c", PREAMBLE + code], env=_env(), capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr[-4000:]


def kill_at_checkpoint(code: str, checkpoint: Path, timeout: float = 600) -> None:
    """Run ``code`` and SIGKILL it as soon as ``checkpoint`` holds a complete checkpoint."""
    proc = subprocess.Popen(
        [sys.executable, "-c", PREAMBLE + code], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + timeout
    try:
        while not (checkpoint / "fingerprint.json").exists():
            if proc.poll() is not None:
                raise AssertionError(
                    f"the run ended (exit {proc.returncode}) before its first checkpoint in {checkpoint}: "
                    f"{proc.stderr.read().decode()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no checkpoint in {checkpoint} after {timeout} s")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def killed_and_resumed(code: str, whole: Path, cut: Path, checkpoint: Path) -> None:
    """Run ``code`` (``OUT`` standing for its output folder) uninterrupted into ``whole``; then into
    ``cut`` killed at its first checkpoint, and again to the end, resuming from ``checkpoint``."""
    run_python(code.replace("OUT", str(whole)))
    kill_at_checkpoint(code.replace("OUT", str(cut)), checkpoint)
    assert not (cut / "training.json").exists(), "a killed run left a complete-looking folder"
    run_python(code.replace("OUT", str(cut)))
    assert not checkpoint.exists(), "the checkpoint outlived its finished run"


def same_files(a: Path, b: Path, pattern: str = "**/*.safetensors") -> list[str]:
    """The files matching ``pattern`` under ``a``, after checking each has the same bytes under ``b``."""
    names = sorted(str(p.relative_to(a)) for p in a.glob(pattern))
    assert names, f"no {pattern} under {a}"
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    return names
