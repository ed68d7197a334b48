"""Levenberg–Marquardt refinement: the reweighted Jacobian, the step, and the loop."""

from __future__ import annotations

import pytest
import torch

from conftest import SIGMA_TRUE_A, argon_lj
from exprefine.observables import Pressure, RadialDistribution
from exprefine.refine import GaussNewtonSettings, RefinerSettings, Target, linearize
from exprefine.refine.gauss_newton import gauss_newton_step, residuals_and_jacobian
from exprefine.refine.targets import total_loss
from exprefine.reweighting import frame_energies, log_weights, reweighted_loss_and_gradient
from test_refiner import _refiner


def _targets(traj):
    rdf = RadialDistribution(r_max_A=8.0, r_min_A=2.5, bin_width_A=0.1, species=("Ar", "Ar"))
    g = rdf.evaluate(traj).mean(0).to(torch.float64)
    reference = g + 0.05 * torch.sin(rdf.grid().to(torch.float64))
    pressure = Pressure(85.0)
    return [
        Target("g_r", rdf, reference, mask=rdf.grid() >= 3.0),
        Target("p", pressure, torch.tensor(50.0, dtype=torch.float64), sigma=torch.tensor(200.0, dtype=torch.float64),
               weight=0.5),
    ]


def _static(targets, traj):
    return [None if t.observable.depends_on_parameters else t.observable.evaluate(traj).to(torch.float64)
            for t in targets]


def _reweighted_average(potential, traj, target, static):
    w = log_weights(frame_energies(potential, traj), traj.energies_eV, traj.kT_eV).exp()
    values = static if static is not None else target.observable.evaluate(traj, potential).to(torch.float64)
    return target.observable.reduce(values, w)


def test_gauss_newton_gradient_equals_the_reweighted_gradient(argon_108_trajectory):
    """2 Jᵀ r is ∂L/∂θ: the same number the chunked DiffTRe backward pass gives (g(r) and pressure)."""
    _, result = argon_108_trajectory
    traj = result.trajectory
    targets = _targets(traj)
    static = _static(targets, traj)
    potential = argon_lj(sigma_A=3.40, epsilon_K=121.0)
    model = linearize(potential, traj, targets, static, chunk_size=7)
    r, J = residuals_and_jacobian(targets, model)
    assert float((r ** 2).sum()) == pytest.approx(model.loss, rel=1e-12)
    step = reweighted_loss_and_gradient(potential, traj, [t.observable for t in targets], static,
                                        lambda p: total_loss(targets, p), chunk_size=7)
    assert step.loss == pytest.approx(model.loss, rel=1e-12)
    expected = torch.stack([potential.log_sigma.grad[0], potential.log_epsilon.grad[0]]).to(torch.float64)
    assert torch.allclose(2 * J.T @ r, expected, rtol=1e-8, atol=0), (2 * J.T @ r, expected)


@pytest.mark.parametrize("which", [0, 1])
def test_jacobian_equals_finite_differences(argon_108_trajectory, which):
    """∂⟨O⟩/∂θ from the covariance formula (plus ⟨∂O/∂θ⟩ for pressure) = central differences on frozen frames."""
    _, result = argon_108_trajectory
    traj = result.trajectory
    targets = _targets(traj)
    static = _static(targets, traj)
    potential = argon_lj(sigma_A=3.40, epsilon_K=121.0)
    model = linearize(potential, traj, targets, static)
    h = 1e-5
    for k, param in enumerate((potential.log_sigma, potential.log_epsilon)):
        values = []
        for sign in (1, -1):
            with torch.no_grad():
                param[0] += sign * h
            values.append(_reweighted_average(potential, traj, targets[which], static[which]))
            with torch.no_grad():
                param[0] -= sign * h
        fd = (values[0] - values[1]) / (2 * h)
        jac = model.jacobians[which][..., k]
        scale = float(fd.abs().max())
        # central differences are exact to O(h²) ≈ 1e-10 relative here; float64 round-off dominates
        assert torch.allclose(jac, fd, rtol=1e-5, atol=1e-6 * scale), (k, (jac - fd).abs().max(), scale)


def test_step_solves_the_linear_least_squares_problem_and_respects_the_cap(argon_108_trajectory):
    _, result = argon_108_trajectory
    traj = result.trajectory
    targets = _targets(traj)[:1]
    static = _static(targets, traj)
    potential = argon_lj(sigma_A=3.45, epsilon_K=110.0)
    model = linearize(potential, traj, targets, static)
    r, J = residuals_and_jacobian(targets, model)
    # undamped and uncapped: the normal equations hold
    step, spread = gauss_newton_step(targets, model, damping=0.0, max_step_kT=1e9)
    assert torch.allclose(J.T @ (J @ step + r), torch.zeros(2, dtype=torch.float64),
                          atol=1e-9 * float((J.T @ r).abs().max()))
    # capped: the spread equals the cap and the direction is unchanged
    capped, capped_spread = gauss_newton_step(targets, model, damping=0.0, max_step_kT=0.5 * spread)
    assert capped_spread == pytest.approx(0.5 * spread)
    assert torch.allclose(capped, 0.5 * step, rtol=1e-10)
    # heavy damping shortens the step
    damped, _ = gauss_newton_step(targets, model, damping=100.0, max_step_kT=1e9)
    assert float(damped.norm()) < 0.1 * float(step.norm())


def test_settings_are_validated():
    with pytest.raises(ValueError, match="damping_increase"):
        GaussNewtonSettings(damping_increase=0.5)
    with pytest.raises(ValueError, match="optimizer"):
        RefinerSettings(optimizer="lbfgs")


def test_levenberg_marquardt_recovers_sigma(argon_108_trajectory, tmp_path):
    """σ starts 5.7 % too large, ε 17 % too small: five steps cut the loss 4× and σ's error to < 2.5 %.

    The target is a 40-frame, 108-atom g(r), noisy enough that its own minimum lies
    ≈ 1 % from the true σ (ε is only loosely fixed by g(r)); the 500-atom recovery of
    examples/argon/recover_synthetic.py is the precise test.
    """
    refiner = _refiner(argon_108_trajectory, tmp_path / "run", n_updates=5, final_check=True,
                       optimizer="gauss_newton")
    result = refiner.run()
    sigma = float(refiner.potential.sigma_A[0].detach())
    assert abs(sigma / SIGMA_TRUE_A - 1) < 0.025, sigma
    assert result.after is not None and result.after.loss < 0.25 * result.before.loss
    assert all(r.damping > 0 for r in result.history)
    assert "accepted" in (tmp_path / "run" / "log.csv").read_text().splitlines()[0]


def test_gauss_newton_resume_reproduces_an_uninterrupted_run(argon_108_trajectory, tmp_path):
    full = _refiner(argon_108_trajectory, tmp_path / "full", n_updates=4, final_check=False, optimizer="gauss_newton")
    full_result = full.run()
    first = _refiner(argon_108_trajectory, tmp_path / "split", n_updates=2, final_check=False,
                     optimizer="gauss_newton")
    first.run()
    second = _refiner(argon_108_trajectory, tmp_path / "split", n_updates=4, final_check=False,
                      optimizer="gauss_newton")
    result = second.run(resume=True)
    assert [(r.accepted, r.damping) for r in result.history] == [(r.accepted, r.damping) for r in full_result.history]
    for a, b in zip(full.potential.parameters(), second.potential.parameters()):
        assert torch.allclose(a, b, rtol=1e-12, atol=0), (a, b)
