"""Grimme's D3(BJ) dispersion as a fixed exprefine Potential, evaluated by the ``dftd3`` package.

A "DFT + D3" model is an MLIP trained on dispersion-free labels plus this term; summed with
:class:`~exprefine.potentials.sum.SumPotential` it can be sampled with exprefine's MD and
evaluated like any other potential. The term has no trainable parameters.

The ``dftd3`` library returns E, ∂E/∂x and the virial W = ∂E/∂ε (ε: symmetric strain of
positions and cell). A custom autograd function hands these back to torch, so forces
(−∂E/∂x) and stress ((1/V) ∂E/∂ε, exprefine's convention) come out of
:meth:`Potential.compute` like for any torch potential. The cell gradient is reconstructed
from W: with cell rows h_i, ∂E/∂ε = Σ_i x_i ⊗ ∂E/∂x_i + Σ_i h_i ⊗ ∂E/∂h_i, so
∂E/∂h = h⁻ᵀ (W − xᵀ ∂E/∂x). Only first derivatives are available (no force training
through this term, which would need none anyway: it has no parameters).

Units: eV, Å inside exprefine; the library works in hartree and bohr.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from ..state import State
from .base import Potential

BOHR_A = 0.52917721090380  # CODATA 2018, as in ase.units
HARTREE_eV = 27.211386245988  # CODATA 2018, as in ase.units


@dataclass(frozen=True)
class D3Parameters:
    """Rational (Becke–Johnson) damping parameters of D3(BJ) and the library's real-space cutoffs.

    Attributes:
        s6, s8: scaling of the C6/r⁶ and C8/r⁸ terms (dimensionless).
        a1: dimensionless damping factor; a2: damping radius in bohr (the library's unit,
            as D3 parameters are always tabulated).
        s9: scaling of the three-body (Axilrod–Teller–Muto) term; 0 switches it off (much faster).
        cutoff_two_body_bohr, cutoff_three_body_bohr, cutoff_coordination_bohr: real-space
            cutoffs of the pair sum, the three-body sum and the coordination numbers.
    """

    s6: float
    s8: float
    a1: float
    a2: float
    s9: float = 0.0
    cutoff_two_body_bohr: float = 60.0
    cutoff_three_body_bohr: float = 40.0
    cutoff_coordination_bohr: float = 40.0

    def damping(self) -> dict[str, float]:
        """The keyword arguments of ``dftd3.interface.RationalDampingParam``."""
        return {"s6": self.s6, "s8": self.s8, "a1": self.a1, "a2": self.a2, "s9": self.s9}

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class D3Evaluation:
    """D3 of every system of a batch, in exprefine units.

    Attributes:
        energy_eV: [n_systems] energies.
        gradient_eV_per_A: [n_atoms, 3] ∂E/∂x.
        cell_gradient_eV_per_A: [n_systems, 3, 3] ∂E/∂h (cell rows h) at fixed Cartesian positions.
    """

    energy_eV: np.ndarray
    gradient_eV_per_A: np.ndarray
    cell_gradient_eV_per_A: np.ndarray


class _D3Energy(torch.autograd.Function):
    """E(positions, cell) with the derivatives the library computed in the forward pass."""

    @staticmethod
    def forward(ctx: Any, positions: torch.Tensor, cell: torch.Tensor, term: "D3Dispersion",
                state: State) -> torch.Tensor:
        result = term.evaluate(state)
        ctx.save_for_backward(
            torch.as_tensor(result.gradient_eV_per_A, dtype=positions.dtype, device=positions.device),
            torch.as_tensor(result.cell_gradient_eV_per_A, dtype=cell.dtype, device=cell.device),
            state.system_idx,
        )
        return torch.as_tensor(result.energy_eV, dtype=positions.dtype, device=positions.device)

    @staticmethod
    def backward(ctx: Any, grad_energy: torch.Tensor):
        gradient, cell_gradient, system_idx = ctx.saved_tensors
        grad_positions = gradient * grad_energy[system_idx][:, None]
        grad_cell = cell_gradient * grad_energy[:, None, None]
        return grad_positions, grad_cell, None, None


class D3Dispersion(Potential):
    """Fixed D3(BJ) dispersion energy of every system of a batch (``dftd3`` package).

    Args:
        parameters: damping parameters and cutoffs (kept as ``settings``: ``parameters`` is nn.Module's).

    The library's structure object of each system is kept and updated in place while the
    atoms (numbers, periodicity) stay the same, as along an MD trajectory.
    """

    def __init__(self, parameters: D3Parameters) -> None:
        super().__init__()
        try:
            import dftd3.interface  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError("D3Dispersion needs the dftd3 package: pip install 'exprefine[reference]'") from exc
        self.settings = parameters
        self.cutoff_A = float(parameters.cutoff_two_body_bohr) * BOHR_A
        self._models: dict[int, tuple[tuple, Any]] = {}

    def energy(self, state: State) -> torch.Tensor:
        """[n_systems] D3 energy in eV (differentiable in positions and cell, first order)."""
        return _D3Energy.apply(state.positions, state.cell, self, state)

    def _model(self, system: int, numbers: np.ndarray, positions_bohr: np.ndarray, lattice_bohr: np.ndarray | None,
               periodic: np.ndarray):
        from dftd3.interface import DispersionModel

        key = (tuple(numbers.tolist()), tuple(periodic.tolist()))
        cached = self._models.get(system)
        if cached is not None and cached[0] == key:
            model = cached[1]
            model.update(positions_bohr, lattice_bohr)
            return model
        model = DispersionModel(numbers, positions_bohr, lattice_bohr, periodic if periodic.any() else None)
        p = self.settings
        model.set_realspace_cutoff(p.cutoff_two_body_bohr, p.cutoff_three_body_bohr, p.cutoff_coordination_bohr)
        self._models[system] = (key, model)
        return model

    def evaluate(self, state: State) -> D3Evaluation:
        """Energy, position gradient and cell gradient of every system (float64 numpy)."""
        from dftd3.interface import RationalDampingParam

        damping = RationalDampingParam(**self.settings.damping())
        positions = state.positions.detach().cpu().double().numpy()
        cells = state.cell.detach().cpu().double().numpy()
        pbc = state.pbc.detach().cpu().numpy().astype(bool)
        numbers = state.atomic_numbers.detach().cpu().numpy().astype(np.int64)
        idx = state.system_idx.detach().cpu().numpy()
        bounds = np.searchsorted(idx, np.arange(state.n_systems + 1))
        energy = np.zeros(state.n_systems)
        gradient = np.zeros_like(positions)
        cell_gradient = np.zeros_like(cells)
        for s in range(state.n_systems):
            lo, hi = bounds[s], bounds[s + 1]
            x = positions[lo:hi]
            periodic = pbc[s]
            lattice = cells[s] / BOHR_A if periodic.any() else None
            model = self._model(s, numbers[lo:hi], x / BOHR_A, lattice, periodic)
            res = model.get_dispersion(damping, grad=True)
            energy[s] = float(res["energy"]) * HARTREE_eV
            g = np.asarray(res["gradient"]) * (HARTREE_eV / BOHR_A)
            gradient[lo:hi] = g
            if periodic.any():
                virial = np.asarray(res["virial"]) * HARTREE_eV  # ∂E/∂ε, eV
                cell_gradient[s] = np.linalg.solve(cells[s].T, virial - x.T @ g)
        return D3Evaluation(energy, gradient, cell_gradient)


__all__ = ["BOHR_A", "D3Dispersion", "D3Evaluation", "D3Parameters", "HARTREE_eV"]
