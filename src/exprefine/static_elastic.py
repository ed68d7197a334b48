"""Zero-temperature elastic constants with internal relaxation, by central differences of the stress.

For each Voigt strain component ε_j = ±δ the cell is strained, the atoms are relaxed at fixed
cell (ASE's BFGS, exprefine's potential through :class:`ExprefineCalculator`), and

    C_ij = (σ_i(+δ) − σ_i(−δ)) / (2δ)

with σ = (1/V) ∂E/∂ε (exprefine's and ASE's convention: positive under tension). The relaxation
makes these the *relaxed-ion* constants that experiments and MD at low temperature measure (for
diamond-structure silicon with Stillinger–Weber, C44 relaxes to 56.4 GPa from its larger Born
term); without it they are the Born terms of :mod:`exprefine.observables.elastic`. A noise-free
check that two parameter sets give the same elastic response.
"""

from __future__ import annotations

import numpy as np

from .observables.elastic import VOIGT_PAIRS
from .potentials.ase_calculator import ExprefineCalculator
from .potentials.base import Potential
from .units import eV_PER_A3_IN_GPa


def relaxed_elastic_constants(potential: Potential, atoms, strain: float = 0.004, fmax_eV_per_A: float = 1e-6,
                              components: tuple[int, ...] = tuple(range(6))) -> np.ndarray:
    """[6, 6] relaxed-ion elastic constants in GPa at 0 K (columns not in ``components`` are NaN).

    Args:
        potential: any exprefine potential.
        atoms: the (relaxed, stress-free) reference structure, ASE Atoms; not modified.
        strain: δ, the magnitude of each Voigt strain (engineering shear strain for j ≥ 3).
        fmax_eV_per_A: force tolerance of the internal relaxation.
        components: the strain components j to apply (columns of C).
    """
    from ase.optimize import BFGS

    if strain <= 0:
        raise ValueError(f"strain must be positive, got {strain}")
    out = np.full((6, 6), np.nan)
    cell0 = np.asarray(atoms.cell.array, dtype=np.float64)
    for j in components:
        stresses = []
        for sign in (1.0, -1.0):
            eps = np.eye(3)
            a, b = VOIGT_PAIRS[j]
            if a == b:
                eps[a, a] += sign * strain
            else:  # symmetric: the engineering shear strain 2ε_ab = ±δ
                eps[a, b] += 0.5 * sign * strain
                eps[b, a] += 0.5 * sign * strain
            strained = atoms.copy()
            strained.set_cell(cell0 @ eps, scale_atoms=True)
            strained.calc = ExprefineCalculator(potential)
            BFGS(strained, logfile=None).run(fmax=fmax_eV_per_A, steps=1000)
            stresses.append(np.asarray(strained.get_stress(voigt=True)))  # eV/Å³, ASE sign
        out[:, j] = (stresses[0] - stresses[1]) / (2.0 * strain) * eV_PER_A3_IN_GPa
    return out


__all__ = ["relaxed_elastic_constants"]
