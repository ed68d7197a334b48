"""Do two simulations sample the same ensemble? Their targets' averages compared within their errors.

The same model run by two engines (exprefine's sampler and LAMMPS, say) at the same state point
should give the same averages up to statistical noise. For every target and every point x_k of
its curve, with the block-averaging standard errors s_a, s_b of the two runs,

    z_k = (A_k − B_k) / √(s_a,k² + s_b,k²),

and mean z² ≈ 1 when both sample the same ensemble — larger when they do not, and also when the
block errors underestimate the noise (runs too short for their blocks to be independent: two
4-ps argon runs of one ensemble give ≈ 4, two 20-ps runs 1.2). Neighbouring points of a curve are
correlated, so the mean over them scatters more than χ²_n/n would. The same difference in units
of the data's σ says whether the experiment could tell the two apart at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .potentials.base import Potential
from .refine.records import Evaluation, evaluate_targets
from .refine.targets import Target
from .trajectory import Trajectory


@dataclass
class TargetAgreement:
    """One target's averages from two runs.

    Attributes:
        name: the target's name.
        n_points: points of the fitted range compared.
        mean_z2_statistical: mean ((A − B)/√(s_a² + s_b²))² over the points (block standard errors).
        mean_z2_data_sigma: mean ((A − B)/σ_data)² (NaN for a target without σ).
        max_abs_difference: the largest |A − B| (units of the observable).
    """

    name: str
    n_points: int
    mean_z2_statistical: float
    mean_z2_data_sigma: float
    max_abs_difference: float


@dataclass
class EnsembleComparison:
    """Every target of two runs: per-target agreement, the frame counts, and each run's evaluation
    (averages and block errors of every target, e.g. for :func:`exprefine.refine.curves.target_curves`)."""

    targets: list[TargetAgreement]
    n_frames_a: int
    n_frames_b: int
    evaluation_a: Evaluation
    evaluation_b: Evaluation


def compare_ensembles(targets: Sequence[Target], a: Trajectory, b: Trajectory, potential: Potential,
                      chunk_size: int = 32) -> EnsembleComparison:
    """Compare the targets' plain averages over the frames of ``a`` and ``b`` (within the fit range).

    ``potential`` serves observables that need one (pressure); structure observables ignore it.
    """
    ev_a = evaluate_targets(targets, a, potential, chunk_size)
    ev_b = evaluate_targets(targets, b, potential, chunk_size)
    out = []
    for t, pa, pb in zip(targets, ev_a.predictions, ev_b.predictions):
        keep = t.mask if t.mask is not None else torch.ones_like(t.reference, dtype=torch.bool)
        diff = (pa.to(torch.float64) - pb.to(torch.float64)).reshape(keep.shape)[keep]
        se = torch.sqrt(ev_a.standard_errors[t.name].to(torch.float64) ** 2
                        + ev_b.standard_errors[t.name].to(torch.float64) ** 2).reshape(keep.shape)[keep]
        z2 = torch.where(se > 0, (diff / se.clamp_min(1e-300)) ** 2, torch.zeros_like(diff))
        data_z2 = float("nan") if t.sigma is None else float(((diff / t.sigma[keep]) ** 2).mean())
        out.append(TargetAgreement(name=t.name, n_points=int(diff.numel()), mean_z2_statistical=float(z2.mean()),
                                   mean_z2_data_sigma=data_z2, max_abs_difference=float(diff.abs().max())))
    return EnsembleComparison(out, a.n_frames, b.n_frames, ev_a, ev_b)


__all__ = ["EnsembleComparison", "TargetAgreement", "compare_ensembles"]
