"""Closed loop in seconds: a perturbed Stillinger–Weber B recovered from the generator's own C11, C12,
C44 (NVT, stress fluctuations) and lattice constant (NPT) at 300 K.

The model is sampled once (B × 1.02); damped Gauss–Newton steps then move B on those frames by
reweighting alone. σ of every target is the generator run's block standard error.
"""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk

from exprefine.blocking import block_standard_error
from exprefine.observables import ElasticConstant, LatticeParameter, Observable
from exprefine.potentials import SumPotential, stillinger_weber_silicon
from exprefine.refine.gauss_newton import StackedModel, apply_step, gauss_newton_step, linearize, residuals_and_jacobian
from exprefine.refine.targets import Target
from exprefine.sampling import BarostatSettings, SamplerSettings, sample
from exprefine.state import from_atoms
from exprefine.trajectory import Trajectory

TEMPERATURE_K = 300.0
SEED = 3


def run(potential: SumPotential, lattice_A: float, npt: bool, seed: int) -> Trajectory:
    """64-atom diamond silicon, 0.2 ps equilibration + 1.2 ps production, a frame every 8 fs."""
    barostat = BarostatSettings(pressure_bar=1.0, compressibility_per_bar=1e-6, time_fs=200.0,
                                interval_steps=5) if npt else None
    settings = SamplerSettings(temperature_K=TEMPERATURE_K, timestep_fs=2.0, friction_per_ps=5.0,
                               n_equilibration_steps=100, n_production_steps=600, stride_steps=4, seed=seed,
                               barostat=barostat)
    start = from_atoms(bulk("Si", "diamond", a=lattice_A, cubic=True).repeat(2))
    return sample(potential, start, settings).trajectory


def mean_and_error(obs: Observable, trajectory: Trajectory, potential: SumPotential) -> tuple[float, float]:
    values = obs.evaluate(trajectory, potential)
    n = values.shape[0]
    value = float(obs.reduce(values, torch.full((n,), 1.0 / n, dtype=torch.float64)))
    return value, float(block_standard_error(values, 10, obs.reduce))


@pytest.mark.slow  # ~25 s: four short MD runs of 64 silicon atoms
def test_stillinger_weber_B_recovered_from_elastic_constants_and_lattice_constant():
    generator = stillinger_weber_silicon(trainable_pair=False, trainable_three_body=False)
    lattice_obs = LatticeParameter("a", repeats=2)
    elastic_obs = [ElasticConstant(c, TEMPERATURE_K, cubic_average=True) for c in ("C11", "C12", "C44")]
    lattice = mean_and_error(lattice_obs, run(generator, 5.437, True, SEED), generator)
    generator_nvt = run(generator, lattice[0], False, SEED + 1)
    elastic = [mean_and_error(o, generator_nvt, generator) for o in elastic_obs]
    npt_targets = [Target("a", lattice_obs, torch.tensor(lattice[0]), torch.tensor(lattice[1]))]
    nvt_targets = [Target(o.name, o, torch.tensor(v), torch.tensor(se)) for o, (v, se) in zip(elastic_obs, elastic)]

    model = stillinger_weber_silicon(B_scale=1.02, trainable_pair=["B"], trainable_three_body=False)
    for outer in range(2):  # sample, then Gauss-Newton steps by reweighting those frames
        npt = run(model, lattice[0], True, SEED + 10 * outer + 2)
        nvt = run(model, lattice[0], False, SEED + 10 * outer + 3)
        for _ in range(2):
            a, b = linearize(model, npt, npt_targets, [None]), linearize(model, nvt, nvt_targets, [None] * len(nvt_targets))
            stacked = StackedModel(predictions=a.predictions + b.predictions, jacobians=a.jacobians + b.jacobians,
                                   energy_covariances=[a.energy_covariance(), b.energy_covariance()],
                                   point_losses=[a.loss, b.loss], ess_fractions=[a.ess_fraction, b.ess_fraction],
                                   n_frames=[npt.n_frames, nvt.n_frames])
            step, _ = gauss_newton_step(npt_targets + nvt_targets, stacked, damping=1e-3, max_step_kT=3.0)
            apply_step(model, step)
    _, jacobian = residuals_and_jacobian(npt_targets + nvt_targets, stacked)
    # standard error of ln B from the targets' σ (loss = mean χ² per target: undo the 1/√n scaling)
    se_log_B = float((jacobian.T @ jacobian).inverse()[0, 0].sqrt()) / len(npt_targets + nvt_targets) ** 0.5
    B = float(model.term_list()[0].log_B.detach().exp())  # type: ignore[operator]
    B_true = 0.6022245584
    ess = (a.ess_fraction, b.ess_fraction)
    predictions = [float(p) for p in stacked.predictions]
    assert len(predictions) == 4
    print(f"B: generator {B_true:.5f}, start {1.02 * B_true:.5f}, recovered {B:.5f} (ln B ± {se_log_B:.4f}); "
          f"ESS/N {ess[0]:.2f}, {ess[1]:.2f}; generator a = {lattice[0]:.4f} ± {lattice[1]:.4f} Å, "
          f"C11/C12/C44 = {[f'{v:.2f} ± {se:.2f}' for v, se in elastic]} GPa; refined (reweighted) {predictions}; "
          f"seed {SEED}")
    # The tolerances are the (C_ij within 5 %, a within 0.002 Å) and a quarter of the
    # perturbation for B. Not 4 σ of ln B: σ from the targets' block errors alone (±0.0001 here)
    # leaves out the model frames' own noise, and 10 blocks of 120 fs underestimate the correlated
    # noise of 1.2-ps runs (measured deviation of ln B: −0.0005 with seed 3).
    assert abs(B / B_true - 1) < 0.005
    # the lattice constant within 4 standard errors of the difference of two 1.2-ps NPT runs (the
    # issue's 0.002 Å is for the longer example: these runs' errors are about 0.002 Å each)
    se_a = (lattice[1] ** 2 + mean_and_error(lattice_obs, npt, model)[1] ** 2) ** 0.5
    assert abs(predictions[0] - lattice[0]) < 4 * se_a
    # C11, C12 within 0.5 % (the issue asks 5 %); C44, whose stress-fluctuation term makes its
    # error of a 1.2-ps run about 15 %, within 4 standard errors of the difference
    for obs, p, (v, se) in zip(elastic_obs, predictions[1:], elastic):
        se_model = mean_and_error(obs, nvt, model)[1]
        assert abs(p - v) < 4 * (se**2 + se_model**2) ** 0.5
        if obs.component != "C44":
            assert p == pytest.approx(v, rel=0.005)


def test_structure_check_smoke_reports_the_first_shell_of_both_runs():
    from conftest import REPO, import_script

    record = import_script(REPO / "examples" / "silicon", "structure_check").main(["--smoke"])
    for name in ("before", "after"):
        peak = record["first_peak"][name]
        # the Si–Si bond of the diamond lattice at a = 5.4313 Å is √3/4 · a = 2.352 Å; thermal motion
        # shifts the histogram's maximum by less than 0.03 Å
        assert abs(peak["position_A"] - 3 ** 0.5 / 4 * 5.4313) < 0.03
        assert 0.03 < peak["fwhm_A"] < 0.3 and peak["n_frames"] == 20
    assert record["rms_change_2_to_5p4_A"] > 0.0
