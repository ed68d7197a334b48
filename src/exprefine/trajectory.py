"""Trajectories for reweighting: frames, the reference energy of each frame, kT and provenance.

All frames of a Trajectory describe the same atoms (replicas of one system are
stored as further frames). Reference energies are float64, as every quantity that
enters Boltzmann weights.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping, Sequence

import torch
from torch import nn

from .atomic import atomic_path
from .state import State


@dataclass
class Trajectory:
    """Stored frames of one system sampled with reference parameters θ_ref.

    Attributes:
        positions_A: [n_frames, n_atoms, 3] positions in Å.
        cells_A: [n_frames, 3, 3] lattice vectors as rows in Å.
        pbc: [3] periodicity.
        atomic_numbers: [n_atoms].
        masses_amu: [n_atoms].
        energies_eV: [n_frames] float64 potential energy U_ref(x_i) under θ_ref.
        kT_eV: thermal energy of the ensemble that was sampled.
        fingerprint: hash of the parameters θ_ref that produced the frames.
        pressure_eV_per_A3: external pressure of an NPT ensemble, or None for NVT.
        time_fs: [n_frames] simulation time of each frame (replicas share times).
        replica: [n_frames] replica index of each frame.
    """

    positions_A: torch.Tensor
    cells_A: torch.Tensor
    pbc: torch.Tensor
    atomic_numbers: torch.Tensor
    masses_amu: torch.Tensor
    energies_eV: torch.Tensor
    kT_eV: float
    fingerprint: str
    pressure_eV_per_A3: float | None = None
    time_fs: torch.Tensor = field(default_factory=lambda: torch.zeros(0))
    replica: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))

    def __post_init__(self) -> None:
        f, n = self.positions_A.shape[:2]
        if self.cells_A.shape != (f, 3, 3):
            raise ValueError(f"cells_A must be [{f}, 3, 3], got {tuple(self.cells_A.shape)}")
        if self.energies_eV.shape != (f,):
            raise ValueError(f"energies_eV must be [{f}], got {tuple(self.energies_eV.shape)}")
        self.energies_eV = self.energies_eV.to(torch.float64)
        if self.time_fs.numel() == 0:
            self.time_fs = torch.zeros(f, dtype=torch.float64)
        if self.replica.numel() == 0:
            self.replica = torch.zeros(f, dtype=torch.long)
        if not bool(torch.isfinite(self.energies_eV).all()):
            raise ValueError("trajectory holds non-finite reference energies")

    @property
    def n_frames(self) -> int:
        return int(self.positions_A.shape[0])

    @property
    def n_atoms(self) -> int:
        return int(self.positions_A.shape[1])

    def volumes_A3(self) -> torch.Tensor:
        """[n_frames] cell volume of each frame in Å³."""
        return torch.linalg.det(self.cells_A).abs()

    def as_state(self, frames: Sequence[int] | slice | torch.Tensor | None = None) -> State:
        """The selected frames as one batched State (one system per frame)."""
        if frames is None:
            frames = slice(None)
        pos = self.positions_A[frames]
        cells = self.cells_A[frames]
        nf = pos.shape[0]
        n = self.n_atoms
        return State(
            positions=pos.reshape(nf * n, 3),
            cell=cells,
            pbc=self.pbc.unsqueeze(0).expand(nf, 3).clone(),
            atomic_numbers=self.atomic_numbers.repeat(nf),
            masses=self.masses_amu.repeat(nf),
            system_idx=torch.arange(nf, device=pos.device).repeat_interleave(n),
        )

    def select(self, frames: Sequence[int] | slice | torch.Tensor) -> "Trajectory":
        """A trajectory of the selected frames (indices, a slice or a boolean mask), same provenance."""
        index = torch.arange(self.n_frames)[frames] if isinstance(frames, slice) else torch.as_tensor(frames)
        if index.dtype == torch.bool:
            index = index.nonzero().reshape(-1)
        return replace(self, positions_A=self.positions_A[index], cells_A=self.cells_A[index],
                       energies_eV=self.energies_eV[index], time_fs=self.time_fs[index], replica=self.replica[index])

    @classmethod
    def concatenate(cls, parts: Sequence["Trajectory"]) -> "Trajectory":
        """The frames of ``parts`` one after the other (same atoms, temperature and ensemble; the
        provenance of the first)."""
        if not parts:
            raise ValueError("nothing to concatenate")
        first = parts[0]
        for k, p in enumerate(parts[1:], start=1):
            if not torch.equal(p.atomic_numbers, first.atomic_numbers) or p.kT_eV != first.kT_eV:
                raise ValueError(f"trajectory {k} holds other atoms or another temperature than trajectory 0")
        return replace(first, positions_A=torch.cat([p.positions_A for p in parts]),
                       cells_A=torch.cat([p.cells_A for p in parts]),
                       energies_eV=torch.cat([p.energies_eV for p in parts]),
                       time_fs=torch.cat([p.time_fs for p in parts]), replica=torch.cat([p.replica for p in parts]))

    def chunks(self, chunk_size: int) -> list[slice]:
        """Consecutive frame slices of at most ``chunk_size`` frames."""
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be ≥ 1, got {chunk_size}")
        return [slice(s, min(s + chunk_size, self.n_frames)) for s in range(0, self.n_frames, chunk_size)]

    # ------------------------------------------------------------------ I/O
    def save(self, path: str | Path) -> None:
        """Save as a torch file of plain tensors (loadable with weights_only=True), written to a
        temporary name and renamed, so that an interrupted save leaves no half-written file."""
        record = {
            "format": "exprefine.trajectory/1",
            "positions_A": self.positions_A,
            "cells_A": self.cells_A,
            "pbc": self.pbc,
            "atomic_numbers": self.atomic_numbers,
            "masses_amu": self.masses_amu,
            "energies_eV": self.energies_eV,
            "kT_eV": float(self.kT_eV),
            "fingerprint": self.fingerprint,
            "pressure_eV_per_A3": self.pressure_eV_per_A3,
            "time_fs": self.time_fs,
            "replica": self.replica,
        }
        with atomic_path(path) as tmp:
            torch.save(record, str(tmp))

    @classmethod
    def load(cls, path: str | Path, device: torch.device | str | None = None) -> "Trajectory":
        """A saved trajectory, on ``device`` (None: where it was saved from)."""
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"trajectory file not found: {path}")
        data = torch.load(str(path), weights_only=True, map_location=device)
        if not isinstance(data, dict) or data.get("format") != "exprefine.trajectory/1":
            raise ValueError(f"{path} is not an exprefine trajectory file")
        del data["format"]
        return cls(**data)

    def to_atoms(self) -> list:
        """One ASE Atoms per frame."""
        return self.as_state().to_atoms()


def parameter_fingerprint(module: nn.Module) -> str:
    """Short SHA-256 over the names and float64 values of a module's state_dict."""
    return state_fingerprint(module.state_dict())


def state_fingerprint(state: Mapping[str, torch.Tensor]) -> str:
    """Short SHA-256 over the names and float64 values of a state_dict."""
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        t = tensor.detach().cpu()
        if t.is_floating_point():
            t = t.to(torch.float64)
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
