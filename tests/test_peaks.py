"""Peak positions and interlayer spacings: closed forms, and gradients through a nonlinear reduction."""

from __future__ import annotations

import pytest
import torch

from conftest import argon_lj
from exprefine.observables import InterlayerSpacing, PeakPosition, RadialDistribution
from exprefine.observables.peaks import parabolic_peak
from exprefine.refine import Target, linearize
from exprefine.refine.targets import total_loss
from exprefine.reweighting import frame_energies, log_weights, reweighted_loss_and_gradient
from exprefine.state import from_atoms
from exprefine.structures.gcn import gcn_stack


def test_parabolic_peak_is_exact_for_a_parabola():
    x = torch.linspace(0.0, 10.0, 101, dtype=torch.float64)
    y = 3.0 - 0.7 * (x - 4.237) ** 2
    assert float(parabolic_peak(x, y, 2.0, 6.0)) == pytest.approx(4.237, abs=1e-12)
    with pytest.raises(ValueError, match="edge"):
        parabolic_peak(x, y, 5.0, 8.0)  # the maximum in [5, 8] is at 5: no peak inside
    with pytest.raises(ValueError, match="at least 3"):
        parabolic_peak(x, y, 4.21, 4.29)


@pytest.mark.parametrize("n_layers,spacing", [(2, 3.25), (4, 3.6)])
def test_interlayer_spacing_of_a_gcn_stack(n_layers, spacing):
    atoms = gcn_stack(n_layers=n_layers, interlayer_spacing_A=spacing, supercell=(2, 2))
    value = InterlayerSpacing(n_layers).per_frame(from_atoms(atoms))
    assert float(value[0]) == pytest.approx(spacing, abs=1e-10)


def _peak_setup(argon_108_trajectory):
    _, result = argon_108_trajectory
    traj = result.trajectory
    rdf = RadialDistribution(r_max_A=8.0, r_min_A=2.5, bin_width_A=0.05, species=("Ar", "Ar"))
    peak = PeakPosition(rdf, (3.2, 4.4))
    static = peak.evaluate(traj).to(torch.float64)
    return traj, peak, static


def _reweighted_peak(potential, traj, peak, static) -> float:
    w = log_weights(frame_energies(potential, traj), traj.energies_eV, traj.kT_eV).exp()
    return float(peak.reduce(static, w))


def test_first_peak_of_lj_argon_and_its_gradient(argon_108_trajectory):
    """The g(r) peak of LJ argon at 85 K sits near 2^(1/6)σ ≈ 3.8 Å; d(peak)/dθ = finite differences."""
    traj, peak, static = _peak_setup(argon_108_trajectory)
    w = torch.full((traj.n_frames,), 1.0 / traj.n_frames, dtype=torch.float64)
    assert 3.6 < float(peak.reduce(static, w)) < 3.9
    target = Target("peak", peak, torch.tensor(3.70, dtype=torch.float64))
    potential = argon_lj(sigma_A=3.40, epsilon_K=121.0)
    reweighted_loss_and_gradient(potential, traj, [peak], [static], lambda p: total_loss([target], p))
    got = torch.stack([potential.log_sigma.grad[0], potential.log_epsilon.grad[0]]).to(torch.float64)
    model = linearize(potential, traj, [target], [static])
    h = 1e-5
    fd_peak = []
    for param in (potential.log_sigma, potential.log_epsilon):
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                param[0] += sign * h
            values.append(_reweighted_peak(potential, traj, peak, static))
            with torch.no_grad():
                param[0] -= sign * h
        fd_peak.append((values[0] - values[1]) / (2 * h))
    fd_peak = torch.tensor(fd_peak, dtype=torch.float64)
    # the Gauss–Newton Jacobian through the nonlinear reduction
    assert torch.allclose(model.jacobians[0], fd_peak, rtol=1e-5, atol=1e-9), (model.jacobians[0], fd_peak)
    # the DiffTRe gradient of (peak − 3.70)²
    expected = 2 * (model.predictions[0] - 3.70) * fd_peak
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-12), (got, expected)
