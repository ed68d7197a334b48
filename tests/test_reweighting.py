"""Reweighting: weights, ESS, stability, and the chunked gradient against finite differences."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import argon_lj
from exprefine.observables import Pressure, RadialDistribution
from exprefine.reweighting import (
    effective_sample_size,
    frame_energies,
    log_weights,
    reweighted_loss_and_gradient,
)


def test_uniform_weights_and_full_ess_at_reference():
    u = torch.randn(200, dtype=torch.float64)
    lw = log_weights(u, u, kT_eV=0.01)
    assert torch.allclose(lw.exp(), torch.full((200,), 1 / 200, dtype=torch.float64), rtol=1e-12, atol=0)
    assert effective_sample_size(lw) == pytest.approx(200, rel=1e-12)


def test_constant_energy_shift_changes_nothing():
    g = torch.Generator().manual_seed(3)
    u_ref = torch.randn(50, generator=g, dtype=torch.float64)
    u = u_ref + 0.05 * torch.randn(50, generator=g, dtype=torch.float64)
    lw1 = log_weights(u, u_ref, 0.02)
    lw2 = log_weights(u + 123.456, u_ref, 0.02)
    assert torch.allclose(lw1, lw2, rtol=0, atol=1e-10)


def test_no_overflow_at_huge_energy_differences():
    kT = 0.01
    u_ref = torch.zeros(4, dtype=torch.float64)
    u = torch.tensor([0.0, 1e4 * kT, -1e4 * kT, 5e3 * kT], dtype=torch.float64)
    lw = log_weights(u, u_ref, kT)
    w = lw.exp()
    assert torch.isfinite(lw[2]) and torch.isfinite(w).all()
    assert float(w.sum()) == pytest.approx(1.0, abs=1e-12)
    assert float(w[2]) == pytest.approx(1.0, abs=1e-12)  # the lowest energy takes all the weight
    assert effective_sample_size(lw) == pytest.approx(1.0, abs=1e-9)


def test_ess_of_two_equal_halves():
    # half the frames have weight 0 (energy +∞ in effect): N_eff = N/2 in the entropy form
    u_ref = torch.zeros(10, dtype=torch.float64)
    u = torch.tensor([0.0] * 5 + [100.0] * 5, dtype=torch.float64)
    assert effective_sample_size(log_weights(u, u_ref, 0.01)) == pytest.approx(5.0, rel=1e-9)


def _rdf_setup(argon_108_trajectory):
    _, result = argon_108_trajectory
    traj = result.trajectory
    rdf = RadialDistribution(r_max_A=8.0, r_min_A=2.5, bin_width_A=0.1, species=("Ar", "Ar"))
    static = rdf.evaluate(traj).to(torch.float64)
    # a target that is not the current average, so the gradient is not zero
    reference = static.mean(0) * 1.05
    return traj, rdf, static, reference


def _loss(preds, reference):
    return ((preds[0] - reference) ** 2).mean()


def test_gradient_matches_finite_differences(argon_108_trajectory):
    traj, rdf, static, reference = _rdf_setup(argon_108_trajectory)
    potential = argon_lj(sigma_A=3.42, epsilon_K=117.0)  # near, not at, θ_ref: weights non-uniform
    potential.zero_grad()
    step = reweighted_loss_and_gradient(potential, traj, [rdf], [static], lambda p: _loss(p, reference), chunk_size=7)
    analytic = torch.stack([potential.log_sigma.grad[0], potential.log_epsilon.grad[0]])
    assert 0.05 < step.ess_fraction < 1.0
    h = 1e-5
    numeric = []
    for name in ("log_sigma", "log_epsilon"):
        values = []
        for sign in (1, -1):
            p = argon_lj(sigma_A=3.42, epsilon_K=117.0)
            with torch.no_grad():
                getattr(p, name)[0] += sign * h
            s = reweighted_loss_and_gradient(p, traj, [rdf], [static], lambda q: _loss(q, reference),
                                             compute_gradient=False)
            values.append(s.loss)
        numeric.append((values[0] - values[1]) / (2 * h))
    numeric = torch.tensor(numeric, dtype=torch.float64)
    # central differences: error O(h²) relative; a few 1e-6 relative is the float64 limit here
    assert torch.allclose(analytic, numeric, rtol=1e-5, atol=1e-12), (analytic, numeric)


def test_gradient_equals_covariance_formula(argon_108_trajectory):
    """d⟨O⟩/dθ = −β(⟨O ∂U/∂θ⟩ − ⟨O⟩⟨∂U/∂θ⟩) for an observable that does not depend on θ."""
    traj, rdf, static, _ = _rdf_setup(argon_108_trajectory)
    potential = argon_lj(sigma_A=3.40, epsilon_K=121.0)
    o = static[:, 20]  # one bin as a scalar observable
    step = reweighted_loss_and_gradient(potential, traj, [rdf], [static], lambda p: p[0][20], chunk_size=64)
    del step
    got = potential.log_epsilon.grad[0].clone()
    # per-frame dU/dθ and the weights at θ
    dU = []
    for sl in traj.chunks(1):
        potential.zero_grad()
        potential.energy(traj.as_state(sl)).sum().backward()
        dU.append(potential.log_epsilon.grad[0].clone())
    dU = torch.stack(dU).to(torch.float64)
    w = log_weights(frame_energies(potential, traj), traj.energies_eV, traj.kT_eV).exp()
    beta = 1.0 / traj.kT_eV
    expected = -beta * ((w * o * dU).sum() - (w * o).sum() * (w * dU).sum())
    assert float(got) == pytest.approx(float(expected), rel=1e-8, abs=1e-14)


def test_chunked_equals_unchunked(argon_108_trajectory):
    traj, rdf, static, reference = _rdf_setup(argon_108_trajectory)
    grads = []
    for chunk in (1, 6, 1000):
        potential = argon_lj(sigma_A=3.41, epsilon_K=118.0)
        reweighted_loss_and_gradient(potential, traj, [rdf], [static], lambda p: _loss(p, reference), chunk_size=chunk)
        grads.append(torch.stack([potential.log_sigma.grad[0], potential.log_epsilon.grad[0]]))
    assert torch.allclose(grads[0], grads[2], rtol=1e-10, atol=0)
    assert torch.allclose(grads[1], grads[2], rtol=1e-10, atol=0)


def test_parameter_dependent_observable_gradient(argon_108_trajectory):
    """Pressure depends on θ through the virial: its gradient adds ⟨∂P/∂θ⟩; check against finite differences."""
    _, result = argon_108_trajectory
    traj = result.trajectory
    sub = traj.__class__(**{**traj.__dict__, "positions_A": traj.positions_A[:8], "cells_A": traj.cells_A[:8],
                           "energies_eV": traj.energies_eV[:8], "time_fs": traj.time_fs[:8],
                           "replica": traj.replica[:8]})
    pressure = Pressure(temperature_K=traj.kT_eV / 8.617333262e-5)
    target_bar = 100.0

    def loss(p):
        return ((p[0] - target_bar) / 100.0) ** 2

    potential = argon_lj(sigma_A=3.41, epsilon_K=119.0)
    reweighted_loss_and_gradient(potential, sub, [pressure], [None], loss, chunk_size=3)
    analytic = float(potential.log_sigma.grad[0])
    h = 1e-5
    vals = []
    for sign in (1, -1):
        p = argon_lj(sigma_A=3.41, epsilon_K=119.0)
        with torch.no_grad():
            p.log_sigma[0] += sign * h
        vals.append(reweighted_loss_and_gradient(p, sub, [pressure], [None], loss, compute_gradient=False).loss)
    numeric = (vals[0] - vals[1]) / (2 * h)
    assert math.isfinite(analytic) and abs(analytic) > 0
    assert analytic == pytest.approx(numeric, rel=1e-5)
