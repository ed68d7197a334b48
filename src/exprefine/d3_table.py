"""A refined D3(BJ) term as a LAMMPS pair table: frozen coordination numbers plus a force-matched short range.

LAMMPS's ``pair_style dispersion/d3`` knows only published functionals' parameters, so a refined
D3 needs another way into LAMMPS. Two pair terms, summed per species pair, stand in for it:

1. D3 with every atom's coordination number frozen at its value in a structure
   (:func:`~exprefine.potentials.dftd3.d3_pair_dispersion`): D3's energies and its long range,
   but none of the forces that come from how C6 follows the coordination numbers of bonded
   neighbours (on g-C3N4 almost all of D3's force);
2. a cubic pair spline over the bonded range (1–3 Å by default) fitted by least squares to what
   (1) misses of the full term's forces on MD frames
   (:func:`~exprefine.force_matching.best_correction_bound`), zero beyond its range.

The coordination numbers that C6 follows count neighbours closer than ≈ 4 Å, so the missed force
is a bonded-range one. On g-C3N4 (strategy H3, ``examples/gcn/d3_table_check.py``) a spline over
1–3 Å, below the interlayer spacing, leaves 2.3 meV/Å of the full term's 28 and keeps the energy
differences between frames within 0.03 meV/atom; a spline over 1–10 Å leaves 2.1 meV/Å but, fitted
to forces alone, also reaches the interlayer pairs and moves the spacing by +0.06 Å.

The fit is measured on frames it did not see: the residual there is the table's force error
against the full term.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from .force_matching import best_correction_bound, force_difference, forces_per_state
from .io.lammps_table import PairTable, tabulate_pairs, write_pair_table
from .potentials import PairPotential, PairSpline
from .potentials.dftd3 import D3Dispersion, D3PairCoefficients, D3Parameters, d3_pair_dispersion
from .potentials.dispersion import PairDispersion
from .state import State


@dataclass
class D3PairApproximation:
    """The pair terms that stand in for a D3 term, and how far their forces are from it.

    Attributes:
        dispersion: D3 at frozen coordination numbers, per species pair.
        spline: the fitted short-range pair spline, or None without frames to fit on.
        coefficients: C6, C8, BJ radii of ``dispersion`` and their spread over sites.
        n_fit_frames, n_check_frames: frames fitted on and held out.
        force_rms_full_meV_per_A: RMS of the full term's forces on the held-out frames (on the
            structure itself without frames).
        force_rms_frozen_vs_full_meV_per_A: RMS of (1) − full on the same frames.
        force_rms_table_vs_full_meV_per_A: RMS of (1) + (2) − full: the table's force error.
    """

    dispersion: PairDispersion
    spline: PairSpline | None
    coefficients: D3PairCoefficients
    n_fit_frames: int
    n_check_frames: int
    force_rms_full_meV_per_A: float
    force_rms_frozen_vs_full_meV_per_A: float
    force_rms_table_vs_full_meV_per_A: float

    def terms(self) -> list[PairPotential]:
        """The pair terms to tabulate."""
        return [self.dispersion] + ([self.spline] if self.spline is not None else [])

    def describe(self) -> str:
        """One line for a table file's header."""
        where = (f"on {self.n_check_frames} MD frames not fitted" if self.spline is not None
                 else "on the structure whose coordination numbers it uses")
        return (f"forces differ from the full D3's by {self.force_rms_table_vs_full_meV_per_A:.2f} meV/Å RMS {where} "
                f"(full D3: {self.force_rms_full_meV_per_A:.2f} meV/Å RMS; frozen coordination numbers alone: "
                f"{self.force_rms_frozen_vs_full_meV_per_A:.2f})")


def _rms_meV(arrays: Sequence[np.ndarray]) -> float:
    return 1000.0 * float(np.sqrt(np.mean(np.concatenate([a.reshape(-1) for a in arrays]) ** 2)))


def d3_pair_approximation(parameters: D3Parameters, structure: State, species: list[str],
                          frames: Sequence[State] = (), spline_range_A: tuple[float, float] = (1.0, 3.0),
                          knot_spacing_A: float = 0.5) -> D3PairApproximation:
    """The pair terms of a D3 term (module docstring): frozen at ``structure``, fitted on ``frames``.

    Args:
        parameters: the D3(BJ) parameters.
        structure: one system whose coordination numbers are frozen (periodic images count when
            it is periodic in all three directions).
        species: the elements of the table, e.g. ``["C", "N"]``.
        frames: single-system states, MD frames of the model: the even-numbered ones are fitted,
            the odd-numbered ones held out. Fewer than two: no spline, the frozen term alone.
        spline_range_A: first and last knot of the fitted spline, Å (φ constant below the first).
        knot_spacing_A: distance between its knots, Å.
    """
    if structure.n_systems != 1:
        raise ValueError(f"d3_pair_approximation: structure must be one system, got {structure.n_systems}")
    periodic = bool(structure.pbc.all())
    cell = structure.cell[0].detach().double().numpy() if periodic else None
    dispersion, coefficients = d3_pair_dispersion(parameters, structure.atomic_numbers.numpy(),
                                                  structure.positions.detach().double().numpy(), species, cell)
    full = D3Dispersion(parameters)
    check = list(frames[1::2]) if len(frames) >= 2 else [structure]
    full_check = forces_per_state(full, check)
    frozen_missing = [f - g for f, g in zip(full_check, forces_per_state(dispersion, check))]
    full_rms, frozen_rms = _rms_meV(full_check), _rms_meV(frozen_missing)
    if len(frames) < 2:
        return D3PairApproximation(dispersion, None, coefficients, 0, 0, full_rms, frozen_rms, frozen_rms)
    lo, hi = spline_range_A
    if not 0.0 < lo < hi or knot_spacing_A <= 0.0:
        raise ValueError(f"need 0 < first knot < last knot and a positive spacing, got {spline_range_A}, {knot_spacing_A}")
    spline = PairSpline(species, cutoff_A=hi, r_min_A=lo, n_knots=int(round((hi - lo) / knot_spacing_A)) + 1)
    spline = spline.to(dtype=dispersion.c6_eV_A6.dtype)
    fit = list(frames[0::2])
    missing = {"fit": force_difference(full, dispersion, fit), "check": frozen_missing}
    bound = best_correction_bound(spline, {"fit": fit, "check": check}, missing, fit_on=["fit"])
    with torch.no_grad():
        spline.values_eV.copy_(torch.as_tensor(bound.parameters).reshape(spline.values_eV.shape))
    spline.values_eV.requires_grad_(False)
    return D3PairApproximation(dispersion, spline, coefficients, len(fit), len(check), full_rms, frozen_rms,
                               bound.residual_rms_meV_per_A["check"])


def write_d3_pair_table(approximation: D3PairApproximation, path: str | Path, species: list[str],
                        title: str) -> tuple[Path, list[PairTable]]:
    """The approximation's pair terms summed per species pair as a LAMMPS table file, its header
    naming ``title`` and the measured force error; the path and the sections written."""
    tables = tabulate_pairs(approximation.terms(), species)
    return write_pair_table(path, tables, comment=f"{title}; {approximation.describe()}"), tables


__all__ = ["D3PairApproximation", "d3_pair_approximation", "write_d3_pair_table"]
