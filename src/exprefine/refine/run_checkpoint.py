"""The layout of a refinement checkpoint's state-point part, and reading it back.

Per state point a checkpoint holds the MD state and random stream of each of its replica groups
(group 0 at the entry's top level, the others under ``replica_groups``), the file of its current
trajectory, how often it was sampled, the parameters of that trajectory (what a blow-up rolls
back to) and its "before" evaluation. A run with several state points keeps one such entry per
point under ``state_points``; a run with one keeps the entry's keys at the checkpoint's top level,
as earlier versions wrote them. The run-wide keys (parameters, history, update rule, wall times)
are the refiner's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

#: the keys of a state point's entry (at the top level of a one-state-point checkpoint)
POINT_KEYS = ("md_state", "generator_state", "trajectory_file", "n_samplings", "reference_potential_state", "before",
              "replica_groups")


@dataclass
class ChainEntry:
    """One MD chain (replica group) of a state point as the checkpoint stores it.

    Attributes:
        md_state: the plain state (:func:`exprefine.io.checkpoint.state_to_plain`) its MD continues from.
        generator_state: its random stream.
    """

    md_state: dict
    generator_state: torch.Tensor


def point_entry(name: str, groups: Sequence[ChainEntry], trajectory_file: str | None, n_samplings: int,
                reference_state: dict, before: dict) -> dict[str, Any]:
    """A state point's entry: group 0's chain at the top, the other groups under ``replica_groups``."""
    entry: dict[str, Any] = {
        "name": name,
        "md_state": groups[0].md_state,
        "generator_state": groups[0].generator_state,
        "trajectory_file": trajectory_file,
        "n_samplings": n_samplings,
        "reference_potential_state": reference_state,
        "before": before,
    }
    if len(groups) > 1:
        entry["replica_groups"] = [{"md_state": g.md_state, "generator_state": g.generator_state} for g in groups[1:]]
    return entry


def with_points(run_keys: Mapping[str, Any], points: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The whole checkpoint: the run-wide keys plus the state points' entries (flat for one state point)."""
    payload = dict(run_keys)
    if len(points) == 1:
        payload.update({key: value for key, value in points[0].items() if key != "name"})
    else:
        payload["state_points"] = list(points)
    return payload


def point_entries(checkpoint: Mapping[str, Any], names: Sequence[str], replica_groups: Sequence[int],
                  path: str | Path) -> list[dict[str, Any]]:
    """Each state point's entry of ``checkpoint`` (read from ``path``), checked against the config's
    state point ``names`` and their numbers of ``replica_groups``; one-line errors otherwise."""
    if "state_points" not in checkpoint:
        if len(names) != 1:
            raise ValueError(f"{path} holds a run with one state point, the config has {len(names)}")
        entries = [{key: checkpoint.get(key) for key in POINT_KEYS}]
    else:
        entries = list(checkpoint["state_points"])
        if [e["name"] for e in entries] != list(names):
            raise ValueError(f"{path} holds the state points {[e['name'] for e in entries]}, the config has "
                             f"{list(names)}")
    for name, groups, entry in zip(names, replica_groups, entries):
        stored = 1 + len(entry.get("replica_groups") or [])
        if stored != groups:
            where = "" if len(names) == 1 else f"state point {name!r}: "
            raise ValueError(f"{path}: {where}the run has {stored} replica group(s), the config {groups}")
    return entries


def chain_entry(entry: Mapping[str, Any], group: int) -> ChainEntry:
    """Replica group ``group``'s chain of a state point's entry."""
    source = entry if group == 0 else entry["replica_groups"][group - 1]
    return ChainEntry(source["md_state"], source["generator_state"])


def prune_trajectories(folder: Path, keep: set[str | None]) -> None:
    """Delete the ``trajectory_*.pt`` files of ``folder`` whose names are not in ``keep``."""
    for old in folder.glob("trajectory_*.pt"):
        if old.name not in keep:
            old.unlink()
