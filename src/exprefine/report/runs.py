"""Reading a run directory back: what a refine, sample or evaluate run left on disk, as dataclasses.

A refinement's directory holds ``summary.json``, ``log.jsonl``, ``curves.json``, ``config.yaml``
and ``run_info.json``; ``sample/``, ``evaluate/`` and ``evaluate_frames/`` (beside it, or given
directly) hold ``evaluation.json``, ``curves.json``, ``config.yaml`` and ``run_info.json``. Files
of runs made before a file existed are missing: the fields are then empty or None.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.metrics import DFTErrors
from ..io.checkpoint import load_checkpoint
from ..provenance import RunInfo, read_run_info
from ..refine.curves import TargetCurve, read_curves
from ..refine.records import UpdateRecord

#: the sub-folders a refinement's run directory may hold, and what made them
SUBRUNS = {"sample": "sample", "evaluate": "evaluate", "evaluate_frames": "evaluate_frames"}


@dataclass
class RefineSummary:
    """A refinement's ``summary.json``.

    Attributes:
        n_updates, n_samplings: updates made and trajectories sampled (check runs included).
        wall_time_s: the sum of ``wall_time_segments_s``, the wall time of each session (resumes).
        loss_before, loss_after: the loss on the first trajectory and on the final check run (None without one).
        rmse_before, rmse_after: every target's RMSE, likewise.
        parameters_before, parameters: the named parameters at the start and at the end.
        dft_before, dft_after: errors on the held-out labelled frames of a fused run (None otherwise).
        final_check_note: why the final check used other than the final parameters, or None.
        n_rejected_steps, n_rollbacks: steps the update rule rejected; blown-up samplings rolled back.
    """

    n_updates: int
    n_samplings: int
    wall_time_s: float
    wall_time_segments_s: list[float]
    loss_before: float
    loss_after: float | None
    rmse_before: dict[str, float]
    rmse_after: dict[str, float] | None
    parameters_before: dict[str, float]
    parameters: dict[str, float]
    dft_before: DFTErrors | None
    dft_after: DFTErrors | None
    final_check_note: str | None
    n_rejected_steps: int
    n_rollbacks: int


@dataclass
class SampledSummary:
    """A sample/evaluate run's ``evaluation.json``: frames, wall time (None for existing frames), RMSEs, loss."""

    n_frames: int
    wall_time_s: float | None
    rmse: dict[str, float]
    loss: float
    frames_file: str | None = None
    #: frames sampled with other parameters (a checkpoint or "config") and reweighted, with N_eff/N
    sampled_with: str | None = None
    ess_fraction: float | None = None


@dataclass
class RunRecord:
    """One run read from disk.

    Attributes:
        kind: "refine", "sample", "evaluate" or "evaluate_frames".
        folder: where it was read from.
        config_text: the resolved ``config.yaml`` ("" when missing).
        curves: every target's measurement and model curves ([] when ``curves.json`` is missing).
        history: the update log (refine only).
        refine: the summary of a refinement, or None.
        sampled: the summary of a sample/evaluate run, or None.
        sessions: the recorded sessions (command, hardware, versions); [] for older runs.
        checkpoint_versions: package versions from the latest checkpoint (older refinements), or {}.
    """

    kind: str
    folder: Path
    config_text: str = ""
    curves: list[TargetCurve] = field(default_factory=list)
    history: list[UpdateRecord] = field(default_factory=list)
    refine: RefineSummary | None = None
    sampled: SampledSummary | None = None
    sessions: list[RunInfo] = field(default_factory=list)
    checkpoint_versions: dict[str, str] = field(default_factory=dict)


def _json(path: Path) -> Any:
    return json.loads(path.read_text())


def _dft(raw: dict[str, Any] | None) -> DFTErrors | None:
    return None if raw is None else DFTErrors(**raw)


def _refine_summary(raw: dict[str, Any], history: list[UpdateRecord]) -> RefineSummary:
    wall = float(raw["wall_time_s"])
    return RefineSummary(
        n_updates=int(raw["n_updates"]), n_samplings=int(raw["n_samplings"]), wall_time_s=wall,
        wall_time_segments_s=[float(t) for t in raw.get("wall_time_segments_s") or [wall]],
        loss_before=float(raw["loss_before"]),
        loss_after=None if raw.get("loss_after") is None else float(raw["loss_after"]),
        rmse_before=dict(raw["rmse_before"]), rmse_after=raw.get("rmse_after"),
        parameters_before=dict(raw.get("parameters_before") or (history[0].parameters if history else {})),
        parameters=dict(raw.get("parameters") or {}),
        dft_before=_dft(raw.get("dft_test_errors_before")), dft_after=_dft(raw.get("dft_test_errors_after")),
        final_check_note=raw.get("final_check_note"),
        n_rejected_steps=int(raw.get("n_rejected_steps", sum(not r.accepted for r in history))),
        n_rollbacks=int(raw.get("n_rollbacks", sum(r.rollbacks for r in history))),
    )


def _history(folder: Path) -> list[UpdateRecord]:
    path = folder / "log.jsonl"
    if not path.exists():
        return []
    return [UpdateRecord(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def _common(record: RunRecord) -> RunRecord:
    folder = record.folder
    if (folder / "config.yaml").exists():
        record.config_text = (folder / "config.yaml").read_text()
    if (folder / "curves.json").exists():
        record.curves = read_curves(folder / "curves.json")
    record.sessions = read_run_info(folder)
    return record


def read_refinement(folder: str | Path) -> RunRecord:
    """A refinement's run directory (``summary.json`` needed: the run must have finished)."""
    folder = Path(folder)
    if not (folder / "summary.json").exists():
        raise FileNotFoundError(f"{folder}: no summary.json (the refinement has not finished; "
                                f"a run in progress or killed can be finished with --resume)")
    record = _common(RunRecord(kind="refine", folder=folder))
    record.history = _history(folder)
    record.refine = _refine_summary(_json(folder / "summary.json"), record.history)
    latest = folder / "checkpoints" / "latest.pt"
    if not record.sessions and latest.exists():
        record.checkpoint_versions = dict(load_checkpoint(latest).get("versions", {}))
    return record


def read_sampled(folder: str | Path, kind: str) -> RunRecord:
    """A sample/evaluate/evaluate_frames folder (``evaluation.json`` needed)."""
    folder = Path(folder)
    raw = _json(folder / "evaluation.json")
    wall = raw.get("wall_time_s")
    record = _common(RunRecord(kind=kind, folder=folder))
    record.sampled = SampledSummary(
        n_frames=int(raw["n_frames"]), wall_time_s=None if wall is None else float(wall),
        rmse=dict(raw["rmse"]), loss=float(raw["loss"]) if raw.get("loss") is not None else math.nan,
        frames_file=raw.get("frames_file"), sampled_with=raw.get("sampled_with"),
        ess_fraction=None if raw.get("ess_fraction") is None else float(raw["ess_fraction"]))
    return record


def read_runs(run_dir: str | Path) -> list[RunRecord]:
    """Every run in ``run_dir``: the refinement itself and its sample/evaluate folders, or a single such folder.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist or holds no run (named in one line).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    if (run_dir / "evaluation.json").exists():
        kind = run_dir.name if run_dir.name in SUBRUNS else "sample"
        return [read_sampled(run_dir, kind)]
    runs = []
    if (run_dir / "summary.json").exists() or (run_dir / "checkpoints").exists():
        runs.append(read_refinement(run_dir))
    for sub, kind in SUBRUNS.items():
        if (run_dir / sub / "evaluation.json").exists():
            runs.append(read_sampled(run_dir / sub, kind))
    if not runs:
        raise FileNotFoundError(f"{run_dir}: no exprefine run here (no summary.json, no evaluation.json, "
                                f"no {', '.join(f'{s}/' for s in SUBRUNS)})")
    return runs
