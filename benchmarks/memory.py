"""Resident memory of the current process (Linux /proc), shared by the benchmarks."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any, Callable


def status_MB(field: str) -> float:
    """VmRSS (current) or VmHWM (peak) resident memory of this process, MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return float(line.split()[1]) / 1024.0
    return float("nan")


def reset_peak_rss() -> None:
    """Reset this process's VmHWM to its current RSS (Linux ≥ 4.0: write 5 to clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # pragma: no cover - not Linux, or not permitted
        pass


def in_fresh_process(target: Callable[..., None], *args: Any) -> Any:
    """Run ``target(*args, queue)`` in a new (spawned) process and return what it put on the queue.

    A fresh process has no memory of earlier measurements, so its peak RSS is the measured
    pass's own.
    """
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return result
