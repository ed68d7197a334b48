"""Resident memory of the current process (Linux /proc), shared by the benchmarks."""

from __future__ import annotations

from pathlib import Path


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
