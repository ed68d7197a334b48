"""Where and with what a run ran: the command, the hardware and the package versions (``run_info.json``)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .io.checkpoint import versions

RUN_INFO_FILE = "run_info.json"


@dataclass
class RunInfo:
    """One session of a run (a resumed run has several).

    Attributes:
        command: the command line (``exprefine refine lj.yaml --resume``), or the Python entry point.
        started: local start time, ISO 8601.
        cpu: the processor's model name.
        n_cpus: logical CPUs of the machine.
        torch_threads: torch's intra-op threads during the run.
        device: "cpu", or the GPU's name when CUDA is available.
        system: operating system and machine (``platform.platform()``).
        versions: package versions (exprefine, torch, numpy, python, ase).
    """

    command: str
    started: str
    cpu: str
    n_cpus: int
    torch_threads: int
    device: str
    system: str
    versions: dict[str, str] = field(default_factory=dict)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def collect_run_info(command: str | None = None) -> RunInfo:
    """This process's command, hardware and versions."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return RunInfo(
        command=command if command is not None else " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        cpu=_cpu_model(),
        n_cpus=os.cpu_count() or 0,
        torch_threads=torch.get_num_threads(),
        device=device,
        system=platform.platform(),
        versions=versions(),
    )


def append_run_info(folder: str | Path, info: RunInfo | None = None) -> RunInfo:
    """Add this session's :class:`RunInfo` to ``folder/run_info.json`` (a list: one entry per session)."""
    info = info or collect_run_info()
    path = Path(folder) / RUN_INFO_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    sessions = [asdict(s) for s in read_run_info(path.parent)]
    path.write_text(json.dumps(sessions + [asdict(info)], indent=2))
    return info


def read_run_info(folder: str | Path) -> list[RunInfo]:
    """The sessions recorded in ``folder/run_info.json`` (none when the file is missing)."""
    path = Path(folder) / RUN_INFO_FILE
    if not path.exists():
        return []
    return [RunInfo(**s) for s in json.loads(path.read_text())]
