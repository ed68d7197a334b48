"""Heat capacity from energy fluctuations: C_V in NVT, C_P in NPT, per mole of atoms or per gram.

Which energy. The total energy E = U + K (potential plus kinetic) fluctuates in the canonical
ensemble with C_V = (⟨E²⟩ − ⟨E⟩²) / (k_B T²); in the isothermal–isobaric ensemble the enthalpy
H = U + K + P V does, with C_P = (⟨H²⟩ − ⟨H⟩²) / (k_B T²) (P the external pressure). Positions
and momenta are independent in both ensembles, so the kinetic part separates:

    C_V = Var(U) / (k_B T²) + C_kin,        C_P = Var(U + P V) / (k_B T²) + C_kin,

with C_kin = Var(K) / (k_B T²) = (3N/2) k_B for the 3N momenta of a thermostat that samples the
canonical momentum distribution (Langevin/BAOAB; one that conserves the total momentum has
3N − 3 degrees of freedom: a relative change of 1/N in C_kin). Trajectories store no
velocities, so C_kin is added analytically; only the configurational part is estimated from
the frames. This is the classical heat capacity (3N k_B for a harmonic solid: no quantum
freezing of the vibrations, which matters below the Debye temperature — for silicon at 300 K
the measured C_P is about 20 J/(mol K), the classical value 24.9).

Finite periodic cells: U is unchanged by a rigid translation of all atoms, so a harmonic crystal
of N atoms has 3N − 3 vibrational modes and Var(U)/(k_B T²) = (3N − 3)/2 k_B; with the kinetic
part C_V = 3N k_B (1 − 1/(2N)) (32 atoms: 24.55 instead of 24.94 J/(mol K)). Nothing is
corrected for it; use cells of a few hundred atoms (0.2 % at 216) when C is a target. An Einstein
solid (atoms tethered to sites) has 3N modes and gives 3N k_B exactly.

Units: per mole of atoms, J/(mol K) (C / N times Avogadro's number), or per gram, J/(g K)
(C over the mass of the cell).

U = U_θ(x) depends on the parameters, so :class:`HeatCapacity` ``depends_on_parameters``:
with gradients enabled the per-frame energies carry a graph. The reduction is nonlinear
(a variance of the weighted moments); block averaging applies it per block.
"""

from __future__ import annotations

import torch

from ..potentials.base import Potential
from ..state import State
from ..trajectory import Trajectory
from ..units import AMU_IN_G, AVOGADRO_per_mol, BOLTZMANN_eV_per_K, eV_IN_J, eV_PER_A3_IN_bar
from .base import Observable, check_temperature, positive_temperature

#: The normalisations a heat capacity is reported in, with their units.
PER_UNITS = {"mole": "J/(mol K)", "gram": "J/(g K)"}

#: Absolute mismatch (bar) allowed between the observable's pressure and an NPT trajectory's.
PRESSURE_ATOL_bar = 1e-3


class HeatCapacity(Observable):
    """C_V (NVT frames, ``pressure_bar`` None) or C_P (NPT frames at ``pressure_bar``), classical.

    Args:
        temperature_K: temperature of the ensemble.
        per: ``"mole"`` (J/(mol K), per mole of atoms) or ``"gram"`` (J/(g K)).
        pressure_bar: external pressure of the NPT ensemble for C_P; None for C_V.

    Per-frame values: [n_frames, 4] float64: X, X² (X = U, or U + P V; eV, eV²), the number
    of atoms N and the mass of the cell (amu).
    """

    depends_on_parameters = True

    def __init__(self, temperature_K: float, per: str = "mole", pressure_bar: float | None = None) -> None:
        if per not in PER_UNITS:
            raise ValueError(f"heat capacity per must be one of {tuple(PER_UNITS)}, got {per!r}")
        self.temperature_K = positive_temperature(temperature_K)
        self.per = per
        self.pressure_bar = None if pressure_bar is None else float(pressure_bar)
        self.unit = PER_UNITS[per]
        self.name = f"heat_capacity_{'v' if pressure_bar is None else 'p'}"

    def check(self, trajectory: Trajectory) -> None:
        """Refuse another temperature, NPT frames for C_V and NVT frames (or another pressure) for C_P."""
        check_temperature(self.name, self.temperature_K, trajectory)
        p = trajectory.pressure_eV_per_A3
        if self.pressure_bar is None and p is not None:
            raise ValueError(f"{self.name}: C_V needs NVT frames; this trajectory was sampled in NPT at "
                             f"{p * eV_PER_A3_IN_bar:g} bar (give pressure_bar for C_P)")
        if self.pressure_bar is not None:
            if p is None:
                raise ValueError(f"{self.name}: C_P needs NPT frames; this trajectory was sampled in NVT")
            if abs(p * eV_PER_A3_IN_bar - self.pressure_bar) > PRESSURE_ATOL_bar:
                raise ValueError(f"{self.name}: pressure_bar = {self.pressure_bar:g} but the trajectory was "
                                 f"sampled at {p * eV_PER_A3_IN_bar:g} bar")

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, 4] X, X², N, mass (see the class); differentiable in θ with grad enabled."""
        if potential is None:
            raise ValueError(f"{self.name} needs the potential (the energy fluctuations depend on it)")
        x = potential.energy(frames).to(torch.float64)
        if self.pressure_bar is not None:
            x = x + self.pressure_bar / eV_PER_A3_IN_bar * frames.volume_A3().to(torch.float64)
        n_atoms = frames.n_atoms_per_system.to(torch.float64)
        mass = torch.zeros(frames.n_systems, dtype=torch.float64, device=x.device)
        mass.index_add_(0, frames.system_idx, frames.masses.to(torch.float64))
        return torch.stack([x, x * x, n_atoms, mass], dim=1)

    def reduce(self, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Scalar heat capacity in :attr:`unit`: Var(X)/(k_B T²) + (3N/2) k_B, normalised."""
        mean = torch.tensordot(weights.to(values.dtype), values, dims=([0], [0]))
        variance = mean[1] - mean[0] * mean[0]
        n_atoms, mass = mean[2], mean[3]
        kT = BOLTZMANN_eV_per_K * self.temperature_K
        c_eV_per_K = variance / (kT * self.temperature_K) + 1.5 * n_atoms * BOLTZMANN_eV_per_K
        if self.per == "mole":
            return c_eV_per_K * eV_IN_J * AVOGADRO_per_mol / n_atoms
        return c_eV_per_K * eV_IN_J / (mass * AMU_IN_G)
