"""An ASE calculator around any exprefine Potential (for ASE MD, relaxations, phonons ...).

Units are ASE's, which coincide with exprefine's for energy (eV), length (Å),
forces (eV/Å) and stress (eV/Å³). Stress is returned in ASE's Voigt order
(xx, yy, zz, yz, xz, xy) with ASE's sign convention (pressure = −trace/3).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from ase.calculators.calculator import Calculator, PropertyNotImplementedError, all_changes
from ase.stress import full_3x3_to_voigt_6_stress

from ..state import from_atoms
from .base import Potential

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


class ExprefineCalculator(Calculator):
    """ASE calculator that evaluates an exprefine :class:`Potential`.

    Args:
        potential: the potential; it must already live on ``device``.
        dtype: floating dtype of the State built from the Atoms (float64 by default).
        device: torch device of that State.
        **kwargs: passed on to :class:`ase.calculators.calculator.Calculator`.

    Forces are always computed (one backward pass); stress only when requested and
    only for fully periodic systems.
    """

    implemented_properties = ["energy", "free_energy", "forces", "stress"]

    def __init__(
        self,
        potential: Potential,
        *,
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(potential, Potential):
            raise TypeError(f"potential must be an exprefine Potential, got {type(potential).__name__}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating dtype, got {dtype}")
        self.potential = potential
        self.dtype = dtype
        self.device = torch.device(device)

    def calculate(
        self,
        atoms: "Atoms | None" = None,
        properties: Sequence[str] = ("energy",),
        system_changes: Sequence[str] = all_changes,
    ) -> None:
        super().calculate(atoms, properties, system_changes)
        want_stress = "stress" in properties
        if want_stress and not self.atoms.pbc.all():
            raise PropertyNotImplementedError("stress needs a system periodic in all three directions")
        state = from_atoms(self.atoms, dtype=self.dtype, device=self.device)
        out = self.potential.compute(state, forces=True, stress=want_stress)
        energy = float(out.energy_eV[0])
        assert out.forces_eV_per_A is not None
        self.results = {
            "energy": energy,
            "free_energy": energy,
            "forces": out.forces_eV_per_A.detach().cpu().double().numpy(),
        }
        if want_stress:
            assert out.stress_eV_per_A3 is not None
            stress = out.stress_eV_per_A3[0].detach().cpu().double().numpy()
            self.results["stress"] = full_3x3_to_voigt_6_stress(stress)
