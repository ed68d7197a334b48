"""Errors of a potential against labelled reference frames (DFT test-set metrics).

Definitions (all in float64):

* energy: e_i = (E_pred,i − E_ref,i) / N_i per frame i with N_i atoms;
  RMSE = sqrt(mean_i e_i²), MAE = mean_i |e_i|, in meV/atom; also the mean ē and the
  standard deviation sqrt(mean_i (e_i − ē)²) after removing it (a constant offset per atom is
  invisible to dynamics: the SD is the part of the energy error that MD feels).
* forces: every Cartesian component of every atom, d = F_pred − F_ref;
  RMSE = sqrt(mean d²), MAE = mean |d| over the 3·N_atoms components, in meV/Å
  (the convention of MACE and NequIP test reports); per element over that element's atoms.
* stress: the 9 components of the frames with a stress label, in meV/Å³
  (1 meV/Å³ = 0.1602 GPa).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..potentials.base import Potential
from .dft import DFTDataset
from .predict import Predictions, predict

MEV_PER_EV = 1000.0


@dataclass
class DFTErrors:
    """Errors of a potential on a labelled data set.

    Attributes:
        n_frames: frames evaluated.
        n_atoms: atoms over all frames.
        energy_rmse_meV_per_atom, energy_mae_meV_per_atom: per-atom energy errors.
        energy_mean_meV_per_atom, energy_sd_meV_per_atom: their mean and their standard
            deviation about it (the mean-removed energy error).
        force_rmse_meV_per_A, force_mae_meV_per_A: force component errors.
        force_rmse_by_element_meV_per_A, force_mae_by_element_meV_per_A: the same per element symbol.
        n_atoms_by_element: atoms of each element.
        stress_rmse_meV_per_A3, stress_mae_meV_per_A3: stress component errors (None without stress labels).
        n_stress_frames: frames with a stress label.
    """

    n_frames: int
    n_atoms: int
    energy_rmse_meV_per_atom: float
    energy_mae_meV_per_atom: float
    force_rmse_meV_per_A: float
    force_mae_meV_per_A: float
    force_rmse_by_element_meV_per_A: dict[str, float] = field(default_factory=dict)
    force_mae_by_element_meV_per_A: dict[str, float] = field(default_factory=dict)
    n_atoms_by_element: dict[str, int] = field(default_factory=dict)
    stress_rmse_meV_per_A3: float | None = None
    stress_mae_meV_per_A3: float | None = None
    n_stress_frames: int = 0
    energy_mean_meV_per_atom: float = float("nan")
    energy_sd_meV_per_atom: float = float("nan")

    def format_table(self, title: str = "DFT errors") -> str:
        """A plain-text table of the errors."""
        lines = [f"{title}: {self.n_frames} frames, {self.n_atoms} atoms",
                 f"  {'quantity':<18}{'unit':<11}{'RMSE':>11}{'MAE':>11}",
                 f"  {'energy':<18}{'meV/atom':<11}{self.energy_rmse_meV_per_atom:11.4g}{self.energy_mae_meV_per_atom:11.4g}",
                 f"  {'forces':<18}{'meV/Å':<11}{self.force_rmse_meV_per_A:11.4g}{self.force_mae_meV_per_A:11.4g}"]
        for symbol, rmse in self.force_rmse_by_element_meV_per_A.items():
            label = f"  {symbol} ({self.n_atoms_by_element[symbol]} atoms)"
            lines.append(f"  {label:<18}{'meV/Å':<11}{rmse:11.4g}{self.force_mae_by_element_meV_per_A[symbol]:11.4g}")
        if self.stress_rmse_meV_per_A3 is not None:
            lines.append(f"  {'stress':<18}{'meV/Å³':<11}{self.stress_rmse_meV_per_A3:11.4g}"
                         f"{self.stress_mae_meV_per_A3:11.4g}   ({self.n_stress_frames} frames)")
        return "\n".join(lines)

    def log_row(self, prefix: str = "") -> dict[str, float]:
        """Flat name → value pairs for a CSV or JSON log row (names carry their units)."""
        row = {
            f"{prefix}energy_rmse_meV_per_atom": self.energy_rmse_meV_per_atom,
            f"{prefix}energy_mae_meV_per_atom": self.energy_mae_meV_per_atom,
            f"{prefix}force_rmse_meV_per_A": self.force_rmse_meV_per_A,
            f"{prefix}force_mae_meV_per_A": self.force_mae_meV_per_A,
        }
        for symbol, rmse in self.force_rmse_by_element_meV_per_A.items():
            row[f"{prefix}force_rmse_{symbol}_meV_per_A"] = rmse
        if self.stress_rmse_meV_per_A3 is not None:
            row[f"{prefix}stress_rmse_meV_per_A3"] = self.stress_rmse_meV_per_A3
        return row

    def weighted_loss(self, energy_weight: float, force_weight: float, stress_weight: float = 0.0) -> float:
        """The DFT loss of :func:`exprefine.training.dft_loss` over the whole set, from these errors.

        w_E·(RMSE_E in eV/atom)² + w_F·(RMSE_F in eV/Å)² + w_S·(RMSE_S in eV/Å³)².
        """
        loss = energy_weight * (self.energy_rmse_meV_per_atom / MEV_PER_EV) ** 2
        loss += force_weight * (self.force_rmse_meV_per_A / MEV_PER_EV) ** 2
        if self.stress_rmse_meV_per_A3 is not None:
            loss += stress_weight * (self.stress_rmse_meV_per_A3 / MEV_PER_EV) ** 2
        return float(loss)


def _rmse(d: torch.Tensor) -> float:
    return float(d.pow(2).mean().sqrt()) * MEV_PER_EV


def _mae(d: torch.Tensor) -> float:
    return float(d.abs().mean()) * MEV_PER_EV


def dft_errors(dataset: DFTDataset, predictions: Predictions) -> DFTErrors:
    """Errors of ``predictions`` (from :func:`~exprefine.data.predict.predict`) against the labels."""
    from ase.data import chemical_symbols

    if predictions.energies_eV.shape != (dataset.n_frames,):
        raise ValueError(f"predictions for {predictions.energies_eV.shape[0]} frames, data set has {dataset.n_frames}")
    f64 = torch.float64
    de = (predictions.energies_eV.to(f64) - dataset.energies_eV) / dataset.atoms_per_frame.to(f64)
    df = predictions.forces_eV_per_A.to(f64) - dataset.forces_eV_per_A
    by_rmse, by_mae, by_n = {}, {}, {}
    for z in dataset.element_numbers():
        mask = dataset.atomic_numbers == z
        symbol = chemical_symbols[z]
        by_rmse[symbol] = _rmse(df[mask])
        by_mae[symbol] = _mae(df[mask])
        by_n[symbol] = int(mask.sum())
    stress_frames = dataset.has_stress & predictions.stress_mask
    stress_rmse = stress_mae = None
    if bool(stress_frames.any()):
        ds = predictions.stress_eV_per_A3.to(f64)[stress_frames] - dataset.stress_eV_per_A3[stress_frames]
        stress_rmse, stress_mae = _rmse(ds), _mae(ds)
    return DFTErrors(
        n_frames=dataset.n_frames,
        n_atoms=dataset.n_atoms_total,
        energy_rmse_meV_per_atom=_rmse(de),
        energy_mae_meV_per_atom=_mae(de),
        force_rmse_meV_per_A=_rmse(df),
        force_mae_meV_per_A=_mae(df),
        force_rmse_by_element_meV_per_A=by_rmse,
        force_mae_by_element_meV_per_A=by_mae,
        n_atoms_by_element=by_n,
        stress_rmse_meV_per_A3=stress_rmse,
        stress_mae_meV_per_A3=stress_mae,
        n_stress_frames=int(stress_frames.sum()),
        energy_mean_meV_per_atom=float(de.mean()) * MEV_PER_EV,
        energy_sd_meV_per_atom=_rmse(de - de.mean()),
    )


def evaluate_dft_errors(
    potential: Potential,
    dataset: DFTDataset,
    batch_size: int = 8,
    stress: bool | None = None,
) -> DFTErrors:
    """Energy, force and (where labelled) stress errors of ``potential`` on ``dataset``.

    Evaluated in batches of ``batch_size`` frames without a parameter graph; ``stress``
    as in :func:`~exprefine.data.predict.predict` (None: the frames with stress labels).
    """
    return dft_errors(dataset, predict(potential, dataset, batch_size=batch_size, stress=stress))
