"""Trajectories sampled elsewhere (LAMMPS, ASE, another MD code) as exprefine Trajectories.

Reweighting needs, for every frame, the potential energy U_ref(x) under the parameters that
*sampled* it, and the temperature of the ensemble. Frames from another program come without
either (a dump's energies belong to that program's model, not to an exprefine potential), so:

* their ``energies_eV`` are zeros and their ``fingerprint`` starts with ``"external:"``
  (:func:`has_reference_energies` is then False);
* ``kT_eV`` is k_B·T of the given temperature, or 0 when none was given — reweighting
  refuses kT ≤ 0, so such a trajectory cannot be reweighted by accident.

Such frames serve to evaluate observables, to start MD, or as DFT-style test structures.
If they *were* sampled with an exprefine potential's model at temperature T (for example a
MACE model exported to LAMMPS), :func:`with_reference_energies` recomputes U_ref with that
potential and makes them reweightable — that claim is the caller's responsibility.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..potentials.base import Potential
from ..reweighting import frame_energies
from ..trajectory import Trajectory, parameter_fingerprint
from ..units import kT_eV
from .ase_files import read_ase_frames

EXTERNAL_PREFIX = "external:"


def has_reference_energies(trajectory: Trajectory) -> bool:
    """False for frames read from elsewhere whose U_ref is unknown (fingerprint ``external:...``)."""
    return not trajectory.fingerprint.startswith(EXTERNAL_PREFIX)


def external_trajectory(
    positions_A: np.ndarray,
    cells_A: np.ndarray,
    pbc: np.ndarray,
    atomic_numbers: np.ndarray,
    *,
    label: str,
    time_fs: np.ndarray | None = None,
    temperature_K: float | None = None,
) -> Trajectory:
    """A Trajectory of frames from elsewhere: zero energies, fingerprint ``external:<label>``.

    Args:
        positions_A: [n_frames, n_atoms, 3] Å.
        cells_A: [n_frames, 3, 3] lattice vectors as rows, Å.
        pbc: [3] periodicity.
        atomic_numbers: [n_atoms].
        label: provenance (the file name), stored in the fingerprint.
        time_fs: [n_frames] time of each frame (zeros if None).
        temperature_K: temperature of the ensemble, if known (kT = 0 otherwise).
    """
    from ase.data import atomic_masses

    numbers = torch.as_tensor(np.asarray(atomic_numbers), dtype=torch.long)
    n_frames = int(np.asarray(positions_A).shape[0])
    return Trajectory(
        positions_A=torch.as_tensor(np.asarray(positions_A, dtype=np.float64)),
        cells_A=torch.as_tensor(np.asarray(cells_A, dtype=np.float64)),
        pbc=torch.as_tensor(np.asarray(pbc, dtype=bool)),
        atomic_numbers=numbers,
        masses_amu=torch.as_tensor(atomic_masses, dtype=torch.float64)[numbers],
        energies_eV=torch.zeros(n_frames, dtype=torch.float64),
        kT_eV=kT_eV(temperature_K) if temperature_K is not None else 0.0,
        fingerprint=f"{EXTERNAL_PREFIX}{label}",
        time_fs=(torch.as_tensor(np.asarray(time_fs, dtype=np.float64)) if time_fs is not None
                 else torch.zeros(n_frames, dtype=torch.float64)),
    )


def with_reference_energies(
    trajectory: Trajectory,
    potential: Potential,
    temperature_K: float | None = None,
    chunk_size: int = 32,
) -> Trajectory:
    """The frames with U_ref recomputed by ``potential`` and its fingerprint, ready to reweight.

    Valid only if the frames are a Boltzmann sample of ``potential`` (the same model, e.g. run
    in LAMMPS) at the trajectory's temperature (or ``temperature_K``).
    """
    kT = kT_eV(temperature_K) if temperature_K is not None else trajectory.kT_eV
    if not kT > 0:
        raise ValueError("reweighting needs the temperature the frames were sampled at: pass temperature_K")
    energies = frame_energies(potential, trajectory, chunk_size)
    return replace(trajectory, energies_eV=energies, kT_eV=kT, fingerprint=parameter_fingerprint(potential))


def read_frames(
    path: str | Path,
    index: str | int | slice = ":",
    *,
    temperature_K: float | None = None,
    frame_interval_fs: float | None = None,
) -> Trajectory:
    """Frames of one system from any file ASE reads (extxyz, ASE .traj, xyz, ...) as a Trajectory.

    All frames must hold the same atoms in the same order and the same periodicity. Energies
    in the file are ignored (see the module docstring).

    Args:
        path: the file.
        index: ASE's frame selection (``":"`` all).
        temperature_K: temperature of the ensemble, if known.
        frame_interval_fs: time between stored frames (time_fs = k·interval); zeros if None.
    """
    path = Path(path)
    frames = read_ase_frames(path, index, "trajectory file")
    if not frames:
        raise ValueError(f"{path}: no frames")
    first = frames[0]
    numbers = first.get_atomic_numbers()
    for k, atoms in enumerate(frames[1:], start=1):
        if len(atoms) != len(first) or not np.array_equal(atoms.get_atomic_numbers(), numbers):
            raise ValueError(f"{path}: frame {k} holds other atoms than frame 0 (a Trajectory is one system)")
        if not np.array_equal(atoms.pbc, first.pbc):
            raise ValueError(f"{path}: frame {k} has another periodicity than frame 0")
    positions = np.stack([a.get_positions() for a in frames])
    cells = np.stack([np.asarray(a.cell.array, dtype=float) for a in frames])
    time = None if frame_interval_fs is None else np.arange(len(frames)) * float(frame_interval_fs)
    return external_trajectory(positions, cells, np.asarray(first.pbc), numbers, label=path.name,
                               time_fs=time, temperature_K=temperature_K)
