"""Route a job's stderr (progress, warnings, tracebacks) into its log file, and progress that reads
well there."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterable

from tqdm import tqdm

# A job log gets a progress line this often: enough to see a job move, few enough to read.
LOG_INTERVAL_S = 10.0


# No bar: in a file, the numbers are what one reads.
_LOG_FORMAT = (
    "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
)


class _LineProgress(tqdm):
    """tqdm writing one whole line per update: a '\\r'-redrawn bar turns a log file into one
    unreadable line. Prints at the start, every ``mininterval`` seconds, and the final state."""

    def display(self, msg=None, pos=None):
        if msg is None:  # tqdm passes msg='' only to erase a bar; a log keeps its lines
            self.fp.write(self.__str__() + "\n")
            self.fp.flush()
        return True

    def close(self):
        if self.disable:
            return
        if self.n != self.last_print_n:
            self._ema_dt = lambda: None  # the final line reports the overall rate
            self.refresh()
        self.disable = True
        self._decr_instances(self)


def progress(
    iterable: Iterable | None = None,
    desc: str = "",
    total: int | None = None,
    *,
    initial: int = 0,
    disable: bool = False,
    interval_s: float | None = None,
) -> tqdm:
    """A progress bar on a terminal; one line per ``interval_s`` (default :data:`LOG_INTERVAL_S`)
    when stderr is a file, as in a job under :func:`log_to`. Iterate it, or ``update`` it by hand."""
    stream = sys.stderr
    sized = total is not None or hasattr(iterable, "__len__")
    if stream.isatty():
        return tqdm(iterable, desc=desc, total=total, initial=initial, disable=disable, file=stream)
    return _LineProgress(
        iterable,
        desc=desc,
        total=total,
        initial=initial,
        disable=disable,
        file=stream,
        mininterval=LOG_INTERVAL_S if interval_s is None else interval_s,
        miniters=1,  # time decides, not tqdm's guess of iterations per interval
        bar_format=_LOG_FORMAT if sized else None,  # a count alone when the length is unknown
    )


# The two timing lines every job log starts and ends with (bench/demo_profile.py reads them).
STARTUP_LINE = "job start-up: {:.2f} s (interpreter, Snakemake preamble, stage imports)"
WORK_LINE = "job work: {:.2f} s"


def _process_age_s() -> float | None:
    """Seconds since this process started (psutil, which Snakemake depends on), None without it."""
    try:
        import psutil
    except ImportError:
        return None
    return time.time() - psutil.Process().create_time()


@contextlib.contextmanager
def log_to(path: str):
    """Send stderr and the logging module's records to ``path`` for the duration of a job.

    The log starts with the job's start-up time and ends with its work time: with ~70 short jobs
    in the demo, start-up is a cost worth seeing.
    """
    startup = _process_age_s()
    entered = time.perf_counter()
    with open(path, "w", buffering=1) as handle:
        if startup is not None:
            handle.write(STARTUP_LINE.format(startup) + "\n")
        previous = sys.stderr
        sys.stderr = handle
        handler = logging.StreamHandler(handle)
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            yield
            handle.write(WORK_LINE.format(time.perf_counter() - entered) + "\n")
        except BaseException:
            import traceback

            traceback.print_exc(file=handle)
            raise
        finally:
            root.removeHandler(handler)
            sys.stderr = previous


@contextlib.contextmanager
def torch_job(path: str, threads: int):
    """:func:`log_to`, with torch held to the job's ``threads``.

    Oversubscribed torch threads ran ADMM and metrics 3-60x slower on shared cores. torch is
    imported here, not at module level: the table and figure jobs use :func:`log_to` without it.
    """
    import torch

    torch.set_num_threads(int(threads))
    with log_to(path):
        yield
