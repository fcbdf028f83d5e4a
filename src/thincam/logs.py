"""Route a job's stderr (tqdm progress, warnings, tracebacks) into its log file."""

from __future__ import annotations

import contextlib
import logging
import sys


@contextlib.contextmanager
def log_to(path: str):
    """Send stderr and the logging module's records to ``path`` for the duration of a job."""
    with open(path, "w", buffering=1) as handle:
        previous = sys.stderr
        sys.stderr = handle
        handler = logging.StreamHandler(handle)
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        try:
            yield
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
