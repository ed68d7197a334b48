"""Gaussian parameter priors: the regularised Gauss–Newton step, the Adam gradient, the config."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from conftest import argon_lj
from exprefine.config import ConfigError, load_config
from exprefine.observables import RadialDistribution
from exprefine.refine import ParameterPrior, Target, linearize, prior_loss
from exprefine.refine.gauss_newton import gauss_newton_step, residuals_and_jacobian
from exprefine.refine.prior import add_prior_gradient, prior_rows
from test_config_cli import tiny_config, write


def _g_r_target(traj):
    rdf = RadialDistribution(r_max_A=8.0, r_min_A=2.5, bin_width_A=0.1, species=("Ar", "Ar"))
    g = rdf.evaluate(traj).mean(0).to(torch.float64)
    return [Target("g_r", rdf, g + 0.05 * torch.sin(rdf.grid().to(torch.float64)), mask=rdf.grid() >= 3.0)]


def test_the_step_with_a_prior_minimises_the_regularised_linear_problem(argon_108_trajectory):
    # min_δ ‖r + Jδ‖² + ‖(θ + δ − μ)/σ‖²  ⇒  (JᵀJ + S⁻²) δ = −Jᵀr − S⁻²(θ − μ), S = diag(σ)
    traj = argon_108_trajectory[1].trajectory
    targets = _g_r_target(traj)
    potential = argon_lj(sigma_A=3.45, epsilon_K=110.0)
    model = linearize(potential, traj, targets, [None])
    r, J = residuals_and_jacobian(targets, model)
    params = [potential.log_sigma, potential.log_epsilon]
    mean, sigma = math.log(120.0), 0.01  # a tight prior on ln ε at 120 K, ≈ 9 % from the start
    prior = ParameterPrior("terms.0.log_epsilon", potential.log_epsilon, torch.tensor(mean, dtype=torch.float64),
                            torch.tensor(sigma, dtype=torch.float64))
    rows = prior_rows([prior], params)
    assert rows[1].shape == (1, 2) and float(rows[1][0, 1]) == pytest.approx(1 / sigma)
    step, _ = gauss_newton_step(targets, model, damping=0.0, max_step_kT=1e9, extra_rows=rows)
    theta = torch.cat([potential.log_sigma.detach(), potential.log_epsilon.detach()]).double()
    S2 = torch.diag(torch.tensor([0.0, 1 / sigma**2], dtype=torch.float64))
    expected = torch.linalg.solve(J.T @ J + S2, -(J.T @ r) - S2 @ (theta - torch.tensor([0.0, mean])))
    assert torch.allclose(step, expected, rtol=1e-8, atol=1e-12)
    # the tight prior pulls ln ε to within its σ of the mean; without it the step goes elsewhere
    assert abs(float(theta[1] + step[1]) - mean) < sigma
    free, _ = gauss_newton_step(targets, model, damping=0.0, max_step_kT=1e9)
    assert abs(float(free[1] - step[1])) > sigma


def test_prior_loss_and_adam_gradient_agree_with_autograd():
    potential = argon_lj(sigma_A=3.45, epsilon_K=110.0)
    prior = ParameterPrior("terms.0.log_sigma", potential.log_sigma, torch.tensor(math.log(3.4), dtype=torch.float64),
                           torch.tensor(0.02, dtype=torch.float64))
    theta = potential.log_sigma.detach().double().clone().requires_grad_(True)  # the parameter is float32
    expected = (((theta - math.log(3.4)) / 0.02) ** 2).sum()
    expected.backward()
    assert prior_loss([prior]) == pytest.approx(float(expected), rel=1e-12)
    add_prior_gradient([prior])
    assert torch.allclose(potential.log_sigma.grad.double(), theta.grad, rtol=1e-6)
    add_prior_gradient([prior])  # accumulates like autograd
    assert torch.allclose(potential.log_sigma.grad.double(), 2 * theta.grad, rtol=1e-6)


def test_bad_priors_are_refused_with_one_line(tmp_path):
    potential = argon_lj()
    with pytest.raises(ValueError, match="sigma must be positive"):
        ParameterPrior("p", potential.log_sigma, torch.tensor(0.0), torch.tensor(0.0))
    with pytest.raises(ValueError, match="one value or 1 values"):
        ParameterPrior("p", potential.log_sigma, torch.tensor([0.0, 1.0]), torch.tensor(1.0))
    from exprefine.builders import build_refiner

    raw = tiny_config(tmp_path / "run", optimizer="gauss_newton")
    raw["potential"]["terms"][0]["prior"] = {"log_sigmaa": {"mean": 1.2, "sigma": 0.1}}
    with pytest.raises(ConfigError, match=r"terms\[0\].prior.log_sigmaa: .* no parameter 'log_sigmaa'; "
                                          r"its parameters: log_epsilon, log_sigma"):
        build_refiner(load_config(write(tmp_path / "a.yaml", raw)), progress=False)
    raw["potential"]["terms"][0]["prior"] = {"log_sigma": {"mean": 1.2, "sigma": -0.1}}
    with pytest.raises(ConfigError, match="sigma must be positive"):
        load_config(write(tmp_path / "b.yaml", raw))


def test_a_tight_prior_holds_a_parameter_in_a_refinement_and_is_logged(tmp_path):
    from exprefine.builders import build_refiner

    raw = tiny_config(tmp_path / "run", optimizer="gauss_newton")
    start = math.log(71.88 * 1.380649e-23 / 1.602176634e-19)  # ln ε of the start, ε in eV
    raw["potential"]["terms"][0]["prior"] = {"log_epsilon": {"mean": start, "sigma": 1e-4}}
    refiner = build_refiner(load_config(write(tmp_path / "c.yaml", yaml.safe_load(yaml.safe_dump(raw)))),
                            progress=False)
    result = refiner.run()
    lj = refiner.potential.term_list()[0]
    # ε moves by at most a few prior σ while σ is free to move
    assert abs(float(lj.log_epsilon.detach()[0]) - start) < 3e-4
    assert abs(float(lj.log_sigma.detach()[0]) - math.log(3.6)) > 3e-4
    assert all(r.prior_loss is not None and r.loss >= r.prior_loss for r in result.history)
    header = (tmp_path / "run" / "log.csv").read_text().splitlines()[0]
    assert "prior_loss" in header and "curvature_min" in header
    # ln σ and ln ε of LJ from g(r): two positive curvatures, logged in ascending order
    eigenvalues = result.history[0].curvature_eigenvalues
    assert len(eigenvalues) == 2 and 0 < eigenvalues[0] <= eigenvalues[1]


def test_log_csv_takes_a_column_that_appears_later(tmp_path):
    # a run resumed by a version that logs more (curvature, priors): the CSV keeps one header for all rows
    import csv

    from exprefine.refine import UpdateRecord
    from exprefine.refine.log import RunLog

    log = RunLog(tmp_path)
    common = dict(ess_fraction=1.0, resampled=True, learning_rate=0.0, wall_time_s=1.0, n_frames=10)
    log.append(UpdateRecord(update=0, loss=3.0, **common))
    log.append(UpdateRecord(update=1, loss=2.0, prior_loss=0.5, curvature_eigenvalues=[0.004, 260.0], **common))
    log.append(UpdateRecord(update=2, loss=1.0, prior_loss=0.25, curvature_eigenvalues=[0.1, 250.0], **common))
    with (tmp_path / "log.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["loss"] for r in rows] == ["3.0", "2.0", "1.0"]
    assert [r["prior_loss"] for r in rows] == ["", "0.5", "0.25"]
    assert [r["curvature_min"] for r in rows] == ["", "0.004", "0.1"] and rows[2]["curvature_max"] == "250.0"
    assert len((tmp_path / "log.jsonl").read_text().splitlines()) == 3
