"""Energy, forces and virial of an exprefine Potential handed to LAMMPS's ``fix external``.

LAMMPS's restricted triclinic box is ``a = (lx, 0, 0)``, ``b = (xy, ly, 0)``,
``c = (xz, yz, lz)`` with origin ``boxlo``; positions are taken relative to the origin and
wrapped into the cell along periodic directions. The global virial LAMMPS expects is
W_ab = Σ r_a f_b in energy units, in the order xx, yy, zz, xy, xz, yz; for a periodic cell it
is −V σ_ab with exprefine's stress σ = (1/V) ∂E/∂ε, and for a cell periodic in no direction
Σ_i r_i ⊗ f_i. A cell periodic in some directions only gets no virial from the model (LAMMPS's
pressure then lacks it; NVT and NVE are unaffected).

Units: LAMMPS ``units metal`` (eV, Å) needs no conversion; ``units real`` gets energies and
forces in kcal/mol and kcal/mol/Å.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
from ase.data import atomic_masses, atomic_numbers, chemical_symbols

from ..potentials.base import Potential
from ..state import State
from ..units import kJ_PER_MOL_IN_eV
from .script import LammpsInputError

#: LAMMPS energy unit per eV for the unit styles whose length unit is Å
ENERGY_PER_eV = {"metal": 1.0, "real": 1.0 / (4.184 * kJ_PER_MOL_IN_eV)}
#: largest difference (amu) between a type's mass and an element's standard mass to map one to the other
MASS_MATCH_amu = 0.05


def energy_per_eV(units: str) -> float:
    """LAMMPS energy unit per eV for the unit style ``units``; LammpsInputError for any other."""
    if units not in ENERGY_PER_eV:
        raise LammpsInputError(f"units {units}: exprefine supplies energies in eV and lengths in Å, "
                               "so the input needs 'units metal' (or 'units real')")
    return ENERGY_PER_eV[units]


def cell_from_box(boxlo: Sequence[float], boxhi: Sequence[float], xy: float, yz: float, xz: float) -> np.ndarray:
    """[3, 3] lattice vectors (rows, Å) of LAMMPS's restricted triclinic (or orthogonal) box."""
    lx, ly, lz = (float(hi) - float(lo) for lo, hi in zip(boxlo, boxhi))
    return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])


def virial_from_stress(stress_eV_per_A3: np.ndarray, volume_A3: float) -> list[float]:
    """LAMMPS's global virial (xx, yy, zz, xy, xz, yz; eV) of a periodic cell: W = −V σ."""
    w = -volume_A3 * np.asarray(stress_eV_per_A3)
    return [float(w[0, 0]), float(w[1, 1]), float(w[2, 2]), float(w[0, 1]), float(w[0, 2]), float(w[1, 2])]


def virial_from_forces(positions_A: np.ndarray, forces_eV_per_A: np.ndarray) -> list[float]:
    """Σ_i r_i ⊗ f_i (xx, yy, zz, xy, xz, yz; eV): the virial of a system periodic in no direction."""
    w = positions_A.T @ forces_eV_per_A
    w = 0.5 * (w + w.T)
    return [float(w[0, 0]), float(w[1, 1]), float(w[2, 2]), float(w[0, 1]), float(w[0, 2]), float(w[1, 2])]


def numbers_of_types(n_types: int, type_map: Sequence[str] | None, masses_amu: Sequence[float] | np.ndarray | None) -> np.ndarray:
    """[n_types + 1] atomic number of each LAMMPS atom type (index 0 unused).

    Args:
        n_types: the number of atom types of the LAMMPS box.
        type_map: element symbol of types 1, 2, ... (like ``pair_coeff * * C N``); None: each
            type's element is the one whose standard mass lies within 0.05 amu of its mass.
        masses_amu: [n_types + 1] per-type masses as LAMMPS stores them (index 0 unused).

    Raises:
        LammpsInputError: a type without an element, an unknown symbol, or an ambiguous mass.
    """
    out = np.zeros(n_types + 1, dtype=np.int64)
    if type_map is not None:
        if len(type_map) < n_types:
            raise LammpsInputError(f"the box has {n_types} atom types but the type map names {len(type_map)} "
                                   f"elements ({' '.join(type_map)})")
        for t, symbol in enumerate(type_map[:n_types], start=1):
            if symbol not in atomic_numbers:
                raise LammpsInputError(f"type map: {symbol!r} (atom type {t}) is not an element symbol")
            out[t] = atomic_numbers[symbol]
        return out
    if masses_amu is None:
        raise LammpsInputError("atom types have no masses yet: give the type map (elements of types 1, 2, ...)")
    for t in range(1, n_types + 1):
        mass = float(masses_amu[t])
        close = [z for z in range(1, len(chemical_symbols)) if abs(atomic_masses[z] - mass) <= MASS_MATCH_amu]
        if len(close) != 1:
            found = "no element" if not close else f"{len(close)} elements ({' '.join(chemical_symbols[z] for z in close)})"
            raise LammpsInputError(f"atom type {t} has mass {mass:g} amu, the standard mass of {found}: "
                                   "give the type map (elements of types 1, 2, ...)")
        out[t] = close[0]
    return out


@dataclass
class CallbackStats:
    """What a force callback did: calls, time spent in the potential, the first error.

    Attributes:
        n_calls: callbacks answered.
        time_s: wall time spent inside them, s.
        error: the first exception raised inside a callback (LAMMPS cannot receive it), or None.
        error_step: the LAMMPS step of that error.
    """

    n_calls: int = 0
    time_s: float = 0.0
    error: BaseException | None = None
    error_step: int | None = None


@dataclass
class ExternalForces:
    """The ``fix external pf/callback`` callback: the Potential's energy, forces and virial.

    Attributes:
        lmp: the ``lammps.lammps`` instance.
        fix_id: the fix external it serves.
        potential: the exprefine potential.
        numbers: [n_types + 1] atomic number of each atom type (:func:`numbers_of_types`).
        energy_factor: LAMMPS energy unit per eV (:func:`energy_per_eV`).
        dtype, device: of the State handed to the potential.
        stats: calls, time and the first error.
    """

    lmp: Any
    fix_id: str
    potential: Potential
    numbers: np.ndarray
    energy_factor: float = 1.0
    dtype: torch.dtype = torch.float64
    device: torch.device | str = "cpu"
    stats: CallbackStats = field(default_factory=CallbackStats)

    def state(self, positions_A: np.ndarray) -> State:
        """The State of the ``len(positions_A)`` local atoms at these positions in the current box."""
        boxlo, boxhi, xy, yz, xz, periodicity, _ = self.lmp.extract_box()
        cell = cell_from_box(boxlo, boxhi, xy, yz, xz)
        pbc = np.array([bool(p) for p in periodicity])
        n = len(positions_A)
        types = np.asarray(self.lmp.numpy.extract_atom("type"))[:n]
        fractional = np.linalg.solve(cell.T, (np.asarray(positions_A, dtype=np.float64) - np.asarray(boxlo)).T).T
        fractional[:, pbc] -= np.floor(fractional[:, pbc])
        numbers = self.numbers[types]
        if (numbers == 0).any():
            raise LammpsInputError(f"atom type {int(types[numbers == 0][0])} has no element in the type map")
        return State(
            positions=torch.as_tensor(fractional @ cell, dtype=self.dtype, device=self.device),
            cell=torch.as_tensor(cell, dtype=self.dtype, device=self.device).unsqueeze(0),
            pbc=torch.as_tensor(pbc, device=self.device).unsqueeze(0),
            atomic_numbers=torch.as_tensor(numbers, dtype=torch.long, device=self.device),
            masses=torch.as_tensor(atomic_masses[numbers], dtype=self.dtype, device=self.device),
            system_idx=torch.zeros(n, dtype=torch.long, device=self.device),
        )

    def __call__(self, caller: Any, ntimestep: int, nlocal: int, tag: np.ndarray, x: np.ndarray, f: np.ndarray) -> None:
        """Fill ``f`` and set the fix's energy and virial; exceptions are kept in ``stats`` (LAMMPS cannot take them)."""
        if self.stats.error is not None:
            f[:] = 0.0
            return
        start = time.perf_counter()
        try:
            self._evaluate(x[:nlocal], f)
        except Exception as exc:  # raised again by the session once LAMMPS returns
            f[:] = 0.0
            self.stats.error, self.stats.error_step = exc, int(ntimestep)
        self.stats.n_calls += 1
        self.stats.time_s += time.perf_counter() - start

    def _evaluate(self, x: np.ndarray, f: np.ndarray) -> None:
        state = self.state(x)
        periodic = bool(state.pbc.all())
        out = self.potential.compute(state, forces=True, stress=periodic)
        assert out.forces_eV_per_A is not None
        forces = out.forces_eV_per_A.detach().cpu().double().numpy()
        f[: len(forces)] = forces * self.energy_factor
        self.lmp.fix_external_set_energy_global(self.fix_id, float(out.energy_eV[0]) * self.energy_factor)
        if periodic:
            assert out.stress_eV_per_A3 is not None
            volume = float(state.volume_A3()[0])
            virial = virial_from_stress(out.stress_eV_per_A3[0].detach().cpu().double().numpy(), volume)
        elif not bool(state.pbc.any()):
            virial = virial_from_forces(state.positions.detach().cpu().double().numpy(), forces)
        else:
            virial = [0.0] * 6
        self.lmp.fix_external_set_virial_global(self.fix_id, [v * self.energy_factor for v in virial])
