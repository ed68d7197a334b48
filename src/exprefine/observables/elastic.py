"""Isothermal elastic constants from fluctuations: stress fluctuations in NVT, volume fluctuations in NPT.

Strain. A frame is deformed homogeneously by the symmetric deformation gradient F(η) with
Lagrangian strain η = (FᵀF − 1)/2, written in Voigt order with engineering shears
(η₁, η₂, η₃, η₄ = 2η_yz, η₅ = 2η_xz, η₆ = 2η_xy). Only derivatives at η = 0 up to second
order are needed, so F = 1 + η − η²/2 (the symmetric square root of 1 + 2η to second order)
is exact for them.

Stress-fluctuation formula (Squire, Holt & Hoover, Physica 42, 388 (1969); Lutsko,
J. Appl. Phys. 65, 2991 (1989)), canonical ensemble at fixed cell of volume V:

    C_αβ = ⟨C^B_αβ⟩ − (V / k_B T) (⟨σ_α σ_β⟩ − ⟨σ_α⟩⟨σ_β⟩) + (N k_B T / V) K_αβ,

* Born term C^B_αβ = (1/V) ∂²U/∂η_α ∂η_β, by autograd (a gradient with a graph, then a
  second gradient of the requested rows);
* σ_α = (1/V) ∂U/∂η_α, the configurational (virial) stress, ASE's sign convention;
* kinetic term: K_αβ = 2 for α = β ∈ {1, 2, 3}, 1 for α = β ∈ {4, 5, 6}, else 0 — the
  Voigt form of δ_ik δ_jl + δ_il δ_jk. Frames hold no velocities, so it is taken at the
  ensemble temperature (the momenta are integrated out analytically; exact for a
  thermostat that samples the canonical momentum distribution).

These are the thermodynamic (Brugger) isothermal constants of the sampled cell; at zero
stress they equal the stress–strain coefficients measured by experiment, so sample the cell
at its zero-pressure shape (from an NPT run) before an NVT run for C_ij.

The Born term and the stress depend on the parameters θ, so :class:`ElasticConstant`
``depends_on_parameters``: with gradients enabled the per-frame values carry a graph (the
potential must be twice differentiable in the positions). Per-frame values are the first and
second moments the formula needs; :meth:`ElasticConstant.reduce` combines the weighted
moments (a nonlinear reduction, which block averaging applies per block as well).

Bulk modulus from volume fluctuations (NPT, a cross-check of (C11 + 2 C12)/3 for a cubic
crystal): K_T = k_B T ⟨V⟩ / (⟨V²⟩ − ⟨V⟩²). Volumes do not depend on θ; the gradient flows
through the weights only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import torch

from ..potentials.base import Potential
from ..state import State
from ..trajectory import Trajectory
from ..units import BOLTZMANN_eV_per_K, eV_PER_A3_IN_GPa
from .base import Observable, check_temperature, positive_temperature

#: Voigt index (0-based) → Cartesian pair.
VOIGT_PAIRS = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))

#: Groups of Voigt pairs that a cubic crystal makes equal (0-based).
CUBIC_EQUIVALENTS = {
    "C11": ((0, 0), (1, 1), (2, 2)),
    "C12": ((0, 1), (0, 2), (1, 2)),
    "C44": ((3, 3), (4, 4), (5, 5)),
}


@dataclass
class StrainDerivatives:
    """First and second strain derivatives of the energy of each frame.

    Attributes:
        stress_eV_per_A3: [n_frames, 6] σ_α = (1/V) ∂U/∂η_α in Voigt order (ASE's sign convention).
        born_eV_per_A3: [n_frames, n_rows, 6] C^B_αβ = (1/V) ∂²U/∂η_α ∂η_β for the requested rows α.
        volume_A3: [n_frames] cell volumes.
    """

    stress_eV_per_A3: torch.Tensor
    born_eV_per_A3: torch.Tensor
    volume_A3: torch.Tensor


def voigt_strain_tensor(eta: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] symmetric Lagrangian strain from [n, 6] Voigt components (engineering shears)."""
    e = torch.zeros(eta.shape[0], 3, 3, dtype=eta.dtype, device=eta.device)
    for v, (i, j) in enumerate(VOIGT_PAIRS):
        if i == j:
            e = e + eta[:, v, None, None] * _unit(i, j, eta)
        else:
            e = e + 0.5 * eta[:, v, None, None] * (_unit(i, j, eta) + _unit(j, i, eta))
    return e


def _unit(i: int, j: int, like: torch.Tensor) -> torch.Tensor:
    m = torch.zeros(3, 3, dtype=like.dtype, device=like.device)
    m[i, j] = 1.0
    return m


def deformation_gradient(eta: torch.Tensor) -> torch.Tensor:
    """[n, 3, 3] F = 1 + η − η²/2: the symmetric F with (FᵀF − 1)/2 = η up to second order in η ([n, 6] Voigt)."""
    e = voigt_strain_tensor(eta)
    eye = torch.eye(3, dtype=eta.dtype, device=eta.device).expand_as(e)
    return eye + e - 0.5 * e @ e


def strain_derivatives(
    frames: State, potential: Potential, rows: tuple[int, ...], create_graph: bool = False
) -> StrainDerivatives:
    """Stress and Born rows of every frame by autograd through a homogeneous strain.

    Args:
        frames: one system per frame, periodic in 3D (positions and cells in Å).
        potential: the potential; twice differentiable in the positions.
        rows: Voigt rows α (0-based) of the Born matrix to compute (each costs one extra
            backward pass).
        create_graph: keep the graph to the parameters (for gradients of the results).
    """
    if not bool(frames.pbc.all()):
        raise ValueError(f"strain derivatives need cells periodic in all three directions, got pbc={frames.pbc.tolist()}")
    with torch.enable_grad():
        eta = torch.zeros(frames.n_systems, 6, dtype=frames.dtype, device=frames.device, requires_grad=True)
        F = deformation_gradient(eta)
        positions = torch.einsum("nab,nb->na", F[frames.system_idx], frames.positions.detach())
        cell = torch.einsum("sab,sib->sia", F, frames.cell.detach())
        energy = potential.energy(replace(frames, positions=positions, cell=cell))
        (first,) = torch.autograd.grad(energy.sum(), eta, create_graph=True)
        born_rows = []
        for k, alpha in enumerate(rows):
            keep = create_graph or k < len(rows) - 1
            (second,) = torch.autograd.grad(first[:, alpha].sum(), eta, create_graph=create_graph,
                                            retain_graph=keep, allow_unused=True)
            born_rows.append(second if second is not None else torch.zeros_like(first))
    volume = torch.linalg.det(frames.cell.detach()).abs()
    stress = first if create_graph else first.detach()
    born = torch.stack(born_rows, dim=1) if born_rows else stress.new_zeros(frames.n_systems, 0, 6)
    return StrainDerivatives(stress_eV_per_A3=stress / volume[:, None], born_eV_per_A3=born / volume[:, None, None],
                             volume_A3=volume)


def kinetic_voigt(alpha: int, beta: int) -> float:
    """K_αβ of the kinetic term (N k_B T / V) K_αβ: 2 on the normal diagonal, 1 on the shear diagonal, else 0."""
    if alpha != beta:
        return 0.0
    return 2.0 if alpha < 3 else 1.0


def parse_component(component: str) -> tuple[int, int]:
    """'C12' → (0, 1): the 0-based Voigt pair of a component name C<α><β>, α, β in 1..6."""
    match = re.fullmatch(r"C([1-6])([1-6])", component)
    if match is None:
        raise ValueError(f"elastic constant component must be C<i><j> with i, j in 1..6, got {component!r}")
    a, b = int(match.group(1)) - 1, int(match.group(2)) - 1
    return (min(a, b), max(a, b))


class ElasticConstant(Observable):
    """One isothermal elastic constant C_αβ in GPa from the NVT stress-fluctuation formula.

    Args:
        component: Voigt name, e.g. ``"C11"``, ``"C12"``, ``"C44"``.
        temperature_K: temperature of the ensemble the frames represent.
        cubic_average: average over the components a cubic crystal makes equal (C11, C22, C33;
            C12, C13, C23; C44, C55, C66): three times the data for the same frames. Only for
            C11, C12 and C44.

    Per-frame values ([n_frames, 3p + 8] for p averaged components, float64): the Born terms
    C^B of the p components, the 6 stresses, the p stress products σ_α σ_β (all eV/Å³,
    products eV²/Å⁶), the volume V (Å³) and N k_B T / V (eV/Å³).
    """

    unit = "GPa"
    depends_on_parameters = True

    def __init__(self, component: str, temperature_K: float, cubic_average: bool = False) -> None:
        pair = parse_component(component)
        self.temperature_K = positive_temperature(temperature_K)
        self.component = f"C{pair[0] + 1}{pair[1] + 1}"
        if cubic_average:
            if self.component not in CUBIC_EQUIVALENTS:
                raise ValueError(f"cubic_average is for C11, C12 and C44, not {self.component}")
            self.pairs: tuple[tuple[int, int], ...] = CUBIC_EQUIVALENTS[self.component]
        else:
            self.pairs = (pair,)
        self.cubic_average = cubic_average
        self.rows = tuple(sorted({a for a, _ in self.pairs}))
        self.name = f"elastic_{self.component}"

    def check(self, trajectory: Trajectory) -> None:
        """Refuse non-periodic frames, another temperature, and NPT frames (the formula is for a fixed cell)."""
        if not bool(torch.as_tensor(trajectory.pbc).all()):
            raise ValueError(f"{self.name} needs cells periodic in all three directions, got pbc={trajectory.pbc.tolist()}")
        check_temperature(self.name, self.temperature_K, trajectory)
        if trajectory.pressure_eV_per_A3 is not None:
            raise ValueError(f"{self.name}: the stress-fluctuation formula needs NVT frames (fixed cell); "
                             "this trajectory was sampled in NPT (use bulk_modulus for NPT volume fluctuations)")

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, 3p + 8] the moments of the formula (see the class); differentiable in θ with grad enabled."""
        if potential is None:
            raise ValueError(f"{self.name} needs the potential (Born term and stress depend on it)")
        d = strain_derivatives(frames, potential, self.rows, create_graph=torch.is_grad_enabled())
        stress = d.stress_eV_per_A3.to(torch.float64)
        born = d.born_eV_per_A3.to(torch.float64)
        volume = d.volume_A3.to(torch.float64)
        born_cols = torch.stack([born[:, self.rows.index(a), b] for a, b in self.pairs], dim=1)
        products = torch.stack([stress[:, a] * stress[:, b] for a, b in self.pairs], dim=1)
        kT = BOLTZMANN_eV_per_K * self.temperature_K
        ideal = frames.n_atoms_per_system.to(torch.float64) * kT / volume
        return torch.cat([born_cols, stress, products, volume[:, None], ideal[:, None]], dim=1)

    def reduce(self, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Scalar C_αβ in GPa from the weighted moments (averaged over the cubic equivalents)."""
        mean = torch.tensordot(weights.to(values.dtype), values, dims=([0], [0]))
        p = len(self.pairs)
        born, stress, products = mean[:p], mean[p:p + 6], mean[p + 6:2 * p + 6]
        volume, ideal = mean[2 * p + 6], mean[2 * p + 7]
        kT = BOLTZMANN_eV_per_K * self.temperature_K
        total = mean.new_zeros(())
        for k, (a, b) in enumerate(self.pairs):
            covariance = products[k] - stress[a] * stress[b]
            total = total + born[k] - volume / kT * covariance + ideal * kinetic_voigt(a, b)
        return total / p * eV_PER_A3_IN_GPa


class BulkModulus(Observable):
    """Isothermal bulk modulus in GPa from NPT volume fluctuations, K_T = k_B T ⟨V⟩ / (⟨V²⟩ − ⟨V⟩²).

    Args:
        temperature_K: temperature of the ensemble the frames represent.

    Per-frame values: [n_frames, 2] (V in Å³, V² in Å⁶), float64; independent of θ.
    """

    name = "bulk_modulus"
    unit = "GPa"
    depends_on_parameters = False

    def __init__(self, temperature_K: float) -> None:
        self.temperature_K = positive_temperature(temperature_K)

    def check(self, trajectory: Trajectory) -> None:
        """Refuse NVT frames (no volume fluctuations) and another temperature."""
        check_temperature(self.name, self.temperature_K, trajectory)
        if trajectory.pressure_eV_per_A3 is None:
            raise ValueError(f"{self.name} needs NPT frames (volume fluctuations); this trajectory was sampled in NVT")

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames, 2] V and V² of each frame."""
        volume = frames.volume_A3().to(torch.float64)
        return torch.stack([volume, volume * volume], dim=1)

    def reduce(self, values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """Scalar K_T in GPa."""
        mean = torch.tensordot(weights.to(values.dtype), values, dims=([0], [0]))
        variance = mean[1] - mean[0] * mean[0]
        kT = BOLTZMANN_eV_per_K * self.temperature_K
        return kT * mean[0] / variance * eV_PER_A3_IN_GPa

