"""Two runs of one ensemble agree within their block standard errors; a different state point does not."""

import torch

from conftest import argon_lj
from exprefine.ensemble_comparison import compare_ensembles
from exprefine.observables import RadialDistribution
from exprefine.refine import Target
from exprefine.sampling import SamplerSettings, sample


def _run(melted, temperature_K: float, seed: int, n_production_steps: int = 2000):
    settings = SamplerSettings(temperature_K=temperature_K, timestep_fs=10.0, friction_per_ps=5.0,
                               n_equilibration_steps=200, n_production_steps=n_production_steps, stride_steps=10,
                               seed=seed)
    return sample(argon_lj(), melted, settings).trajectory


def test_same_ensemble_gives_mean_z2_near_one_and_another_temperature_does_not(argon_108_trajectory):
    potential, result = argon_108_trajectory
    rdf = RadialDistribution(r_max_A=8.0, r_min_A=2.5, bin_width_A=0.1, species=("Ar", "Ar"))
    reference = rdf.evaluate(result.trajectory).mean(0).to(torch.float64)
    target = Target("g_r", rdf, reference, sigma=torch.full_like(reference, 0.05), mask=rdf.grid() >= 3.0)
    start = result.final.state.clone()
    first, second = _run(start, 85.0, seed=31), _run(start, 85.0, seed=33)
    hotter = _run(start, 130.0, seed=32, n_production_steps=400)
    agree = compare_ensembles([target], first, second, potential).targets[0]
    # mean of n = 50 values of z² (expectation 1; 1.17 measured with these seeds); the block errors
    # come from 10 blocks of 20 frames (≈ 25 % relative error each) and neighbouring bins correlate:
    # a wide window. (Runs of 40 frames gave 4.3: 4 ps are too short for the blocks to be independent.)
    assert agree.n_points == int((rdf.grid() >= 3.0).sum())
    assert 0.25 < agree.mean_z2_statistical < 3.0
    differ = compare_ensembles([target], first, hotter, potential).targets[0]
    assert differ.mean_z2_statistical > 10.0
    assert differ.mean_z2_data_sigma > agree.mean_z2_data_sigma
