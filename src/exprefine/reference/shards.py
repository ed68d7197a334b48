"""Labelling in named shards: resumable frame by frame, each finished shard written once, compressed.

A long labelling job (hours, over several sessions) is cut into shards, each a named list of
frames. Shard ``s`` is labelled by :func:`~exprefine.reference.tblite_methods.label_frames`
into a working cache ``work_dir/s.extxyz`` (one frame appended as soon as it is done, so a
kill loses at most the frame in progress); when every frame of the shard is labelled, the
shard is written to ``out_dir/s.extxyz.gz`` (frames in the shard's order, gzip with a zero
time stamp: the same labels give the same bytes) and the working cache is deleted.

Frames are matched by :func:`~exprefine.reference.tblite_methods.frame_key`; a frame found in
the shard file or in the working cache is never recomputed. A shard whose frame list grows
later (more frames requested) is reopened: its finished frames are copied back into the
working cache and only the new ones are computed. ``max_new_frames`` bounds the frames
computed by one call, so a job can be run in pieces of known length.

Within a shard, frames are computed grouped by their atomic numbers (stable order), so that
the warm start of the calculator (previous wavefunction as the guess; only between frames
with the same atoms) applies as often as possible.
"""

from __future__ import annotations

import gzip
import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from ase import Atoms

from ..atomic import atomic_path
from .tblite_methods import METHODS, _append_frame, frame_key, label_frames, read_label_cache

SHARD_SUFFIX = ".extxyz.gz"


@dataclass
class ShardStatus:
    """State of one shard after :func:`label_shards`.

    Attributes:
        name: the shard's name (file stem).
        n_frames: frames the shard should hold.
        n_labelled: frames labelled so far (shard file or working cache).
        complete: all frames labelled and the compressed shard file written.
        path: the compressed shard file (exists when ``complete``).
    """

    name: str
    n_frames: int
    n_labelled: int
    complete: bool
    path: Path


@dataclass
class ShardRun:
    """Outcome of :func:`label_shards`.

    Attributes:
        frames: the labelled frames of all shards, shard by shard in the shards' frame order
            (frames not labelled yet are left out); those of complete shards as read back from
            the shard files, so that a first and a resumed call give the same numbers.
        shards: status of each shard, in the order given.
        n_computed: frames computed in this call.
        n_cached: frames read from shard files or working caches.
        wall_s: seconds spent in the labelling calls of this call.
        label_wall_s: the per-frame times (``label_wall_s``) of the frames computed in this call.
    """

    frames: list[Atoms]
    shards: list[ShardStatus]
    n_computed: int
    n_cached: int
    wall_s: float
    label_wall_s: list[float] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return all(s.complete for s in self.shards)

    @property
    def n_missing(self) -> int:
        return sum(s.n_frames - s.n_labelled for s in self.shards)


def shard_path(out_dir: str | os.PathLike, name: str) -> Path:
    """The compressed file of shard ``name``: ``out_dir/name.extxyz.gz``."""
    return Path(out_dir) / f"{name}{SHARD_SUFFIX}"


def write_shard(path: str | os.PathLike, frames: Sequence[Atoms]) -> Path:
    """Write ``frames`` (with their labels) as gzip-compressed extxyz, atomically (temp file + rename).

    The gzip header carries no time stamp or name, so equal frames give equal bytes.
    """
    from ase.io import write

    path = Path(path)
    text = io.StringIO()
    write(text, list(frames), format="extxyz")
    with atomic_path(path) as tmp, open(tmp, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
            gz.write(text.getvalue().encode("utf-8"))
        raw.flush()
        os.fsync(raw.fileno())
    return path


def read_shard(path: str | os.PathLike) -> list[Atoms]:
    """The frames of a shard file (gzip extxyz); a missing file reads as empty."""
    from ase.io import read

    path = Path(path)
    if not path.exists():
        return []
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        text = fh.read()
    if not text.strip():
        return []
    return list(read(io.StringIO(text), index=":", format="extxyz"))


def _check_labels(frames: Sequence[Atoms], method: str, electronic_temperature_K: float, where: Path) -> None:
    for atoms in frames:
        if atoms.info.get("label_method") != method:
            raise ValueError(f"{where} holds labels of method {atoms.info.get('label_method')!r}, not {method!r}")
        if float(atoms.info.get("electronic_temperature_K", float("nan"))) != float(electronic_temperature_K):
            raise ValueError(f"{where} holds labels at {atoms.info.get('electronic_temperature_K')} K, "
                             f"not {electronic_temperature_K} K")


def _numbers_key(atoms: Atoms) -> bytes:
    return atoms.numbers.astype("int64").tobytes()


@dataclass
class _ShardPlan:
    name: str
    keys: list[str]
    labelled: dict[str, Atoms]
    todo: list[Atoms]
    n_new: int
    cache: Path
    path: Path


def _plan_shard(name: str, frames: Sequence[Atoms], method: str, electronic_temperature_K: float,
                out_dir: Path, work_dir: Path, budget: int | None) -> _ShardPlan:
    """Read what shard ``name`` already has; choose the frames to run (within ``budget`` new ones)."""
    keys = [frame_key(a) for a in frames]
    path = shard_path(out_dir, name)
    cache = work_dir / f"{name}.extxyz"
    done = read_shard(path)
    _check_labels(done, method, electronic_temperature_K, path)
    labelled = {str(a.info["frame_key"]): a for a in done}
    if all(k in labelled for k in keys):
        return _ShardPlan(name, keys, labelled, [], 0, cache, path)
    cached = read_label_cache(cache)
    _check_labels(cached, method, electronic_temperature_K, cache)
    cached_keys = {str(a.info["frame_key"]) for a in cached}
    todo: list[Atoms] = []
    n_new = 0
    for atoms, key in zip(frames, keys):
        if key in cached_keys or key in labelled:
            todo.append(atoms)
        elif budget is None or n_new < budget:
            todo.append(atoms)
            n_new += 1
    todo.sort(key=_numbers_key)  # stable: frames with the same atoms together, for warm starts
    return _ShardPlan(name, keys, labelled, todo, n_new, cache, path)


def label_shards(
    shards: Sequence[tuple[str, Sequence[Atoms]]],
    method: str,
    out_dir: str | os.PathLike,
    work_dir: str | os.PathLike,
    electronic_temperature_K: float = 300.0,
    accuracy: float = 1.0,
    max_new_frames: int | None = None,
    progress: Callable[[Atoms, int, int], None] | None = None,
) -> ShardRun:
    """Label the frames of every shard with "label" or "truth" (see the module docstring).

    Args:
        shards: (name, frames) pairs; names must be unique and usable as file names.
        method: "label" or "truth".
        out_dir: where finished shards go (``name.extxyz.gz``).
        work_dir: where working caches of unfinished shards go (``name.extxyz``).
        electronic_temperature_K: Fermi smearing temperature, K.
        accuracy: tblite accuracy factor.
        max_new_frames: compute at most this many frames in this call (None: no limit).
        progress: optional callback(labelled_frame, n_computed, n_to_compute) after each
            computed frame; n_to_compute is the number of frames this call will compute.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; use one of {METHODS}")
    names = [name for name, _ in shards]
    if len(set(names)) != len(names):
        raise ValueError("shard names must be unique")
    if max_new_frames is not None and max_new_frames < 0:
        raise ValueError(f"max_new_frames must be ≥ 0, got {max_new_frames}")
    out_dir, work_dir = Path(out_dir), Path(work_dir)
    plans: list[_ShardPlan] = []
    budget = max_new_frames
    for name, frames in shards:
        plan = _plan_shard(name, list(frames), method, electronic_temperature_K, out_dir, work_dir, budget)
        plans.append(plan)
        if budget is not None:
            budget -= plan.n_new
    n_to_compute = sum(plan.n_new for plan in plans)

    times: list[float] = []

    def report(i: int, n: int, atoms: Atoms) -> None:
        times.append(float(atoms.info["label_wall_s"]))
        if progress is not None:
            progress(atoms, len(times), n_to_compute)

    frames_out: list[Atoms] = []
    statuses: list[ShardStatus] = []
    n_computed = 0
    wall_s = 0.0
    for plan in plans:
        if plan.todo:
            if plan.labelled:
                # a finished shard file whose frame list grew: its frames go back into the working cache
                cached_keys = {str(a.info["frame_key"]) for a in read_label_cache(plan.cache)}
                plan.cache.parent.mkdir(parents=True, exist_ok=True)
                for key, atoms in plan.labelled.items():
                    if key not in cached_keys:
                        _append_frame(plan.cache, atoms)
            t0 = time.perf_counter()
            run = label_frames(plan.todo, method, plan.cache, electronic_temperature_K, accuracy, progress=report)
            wall_s += time.perf_counter() - t0
            n_computed += run.n_computed
            plan.labelled.update({str(a.info["frame_key"]): a for a in run.frames})
            complete = all(k in plan.labelled for k in plan.keys)
            if complete:
                write_shard(plan.path, [plan.labelled[k] for k in plan.keys])
                plan.cache.unlink(missing_ok=True)
                # hand back what the file holds (8 decimals), as every later call will
                plan.labelled = {str(a.info["frame_key"]): a for a in read_shard(plan.path)}
        else:
            # nothing to run: complete, or no budget left for this shard
            complete = all(k in plan.labelled for k in plan.keys)
            if not complete:
                plan.labelled.update({str(a.info["frame_key"]): a for a in read_label_cache(plan.cache)})
        in_shard = [plan.labelled[k] for k in plan.keys if k in plan.labelled]
        frames_out.extend(in_shard)
        statuses.append(ShardStatus(plan.name, len(plan.keys), len(in_shard), complete, plan.path))
    return ShardRun(frames_out, statuses, n_computed, len(frames_out) - n_computed, wall_s, times)


__all__ = ["SHARD_SUFFIX", "ShardRun", "ShardStatus", "label_shards", "read_shard", "shard_path", "write_shard"]
