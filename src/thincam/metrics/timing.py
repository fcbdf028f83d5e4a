"""Latency and peak memory of a reconstruction call, measured the same way for every method.

torch is imported only on CUDA, so timing a numpy solver costs no torch import.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
from collections.abc import Callable


def _reset_rss_peak() -> None:
    """Restart the kernel's RSS high-water mark (Linux >= 4.0), so the peak is that of the calls.

    ``getrusage``'s ru_maxrss cannot be reset and survives fork and exec: a job started by a
    1 GB parent reports at least 1 GB (measured), hence VmHWM where /proc has it.
    """
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
    except OSError:
        pass


def _rss_peak_mb() -> float:
    """VmHWM of this process in MB; ru_maxrss where there is no /proc (KiB on Linux, bytes on macOS)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 2**10
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


def measure_latency(
    fn: Callable[[], object],
    *,
    warmup: int = 1,
    repeats: int = 3,
    device: str = "cpu",
    min_timed_s: float = 0.0,
) -> tuple[float, float]:
    """Median seconds of up to ``repeats`` calls of ``fn()`` after ``warmup`` untimed ones, and
    peak MB.

    Warm-up calls absorb one-off costs (allocator growth, kernel selection) that are not the
    method's latency. Timing stops early once the timed calls add up to ``min_timed_s``: a
    millisecond solver gets its ``repeats`` (one call is noise), a seconds-long diffusion
    sampler one call (repeating it measures nothing new and doubles its job). On CUDA the clock waits for queued kernels and the peak is
    ``torch.cuda.max_memory_allocated`` over the calls; on CPU it is the process's peak resident
    memory over the calls (what it already held, such as model weights, included).
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"need warmup >= 0 and repeats >= 1, got {warmup} and {repeats}")
    device = str(device)
    cuda = device.startswith("cuda")
    if cuda:
        import torch

        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        _reset_rss_peak()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
        if min_timed_s and sum(times) >= min_timed_s:
            break
    peak_mb = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _rss_peak_mb()
    return float(statistics.median(times)), float(peak_mb)
