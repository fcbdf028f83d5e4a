"""Job logs: progress as whole lines, one per update interval, never '\\r'-redrawn bars."""

from __future__ import annotations

import time

from thincam.logs import log_to, progress


def test_progress_in_a_log_is_one_line_per_update(tmp_path):
    log = tmp_path / "job.log"
    with log_to(str(log)):
        for _ in progress(range(4), "denoise", interval_s=0.01):
            time.sleep(0.03)  # every step outlasts the interval: each one is an update
        bar = progress(desc="distill", total=5, initial=2, interval_s=0.01)
        for _ in range(3):
            time.sleep(0.03)
            bar.update(1)
            bar.set_postfix(loss="0.25", refresh=False)
        bar.close()
        for _ in progress(range(1000), "fast", interval_s=60.0):
            pass
    text = log.read_text()
    assert "\r" not in text
    lines = text.splitlines()
    denoise = [line for line in lines if line.startswith("denoise:")]
    assert [line.split()[2] for line in denoise] == ["0/4", "1/4", "2/4", "3/4", "4/4"]
    distill = [line for line in lines if line.startswith("distill:")]
    assert [line.split()[2] for line in distill] == ["2/5", "3/5", "4/5", "5/5"]
    assert distill[-1].endswith("loss=0.25]")
    fast = [line for line in lines if line.startswith("fast:")]
    assert [line.split()[2] for line in fast] == ["0/1000", "1000/1000"]  # start and end only
    assert lines[0].startswith("job start-up: ") and lines[-1].startswith("job work: ")
    assert len(lines) == len(denoise) + len(distill) + len(fast) + 2


def test_log_times_the_start_up_and_the_work(tmp_path):
    """Start-up is the process's age at entry (this pytest process: seconds), work the block's."""
    log = tmp_path / "job.log"
    with log_to(str(log)):
        time.sleep(0.2)
    first, last = log.read_text().splitlines()
    assert float(first.split()[2]) > 0.5
    assert 0.2 <= float(last.split()[2]) < 1.0
    failed = tmp_path / "failed.log"
    try:
        with log_to(str(failed)):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert "job work" not in failed.read_text() and "RuntimeError: boom" in failed.read_text()


def test_progress_counts_an_iterable_of_unknown_length(tmp_path):
    log = tmp_path / "job.log"
    with log_to(str(log)):
        for _ in progress((k for k in range(3)), "stream", interval_s=0.01):
            time.sleep(0.03)
    lines = log.read_text().splitlines()[1:-1]
    assert [line.split()[1] for line in lines] == ["0it", "1it", "2it", "3it"]
