"""Elastic constants: Born term against finite differences of the stress, LJ fcc at low temperature
against its harmonic (zero-temperature) constants, bulk modulus from volume fluctuations (synthetic,
and against (C11 + 2 C12)/3 from stress fluctuations), config keys."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.neighborlist import neighbor_list

from exprefine.blocking import block_standard_error
from exprefine.builders import build_target
from exprefine.config import TargetConfig
from exprefine.observables import BulkModulus, ElasticConstant, strain_derivatives
from exprefine.observables.elastic import VOIGT_PAIRS, parse_component
from exprefine.potentials import LennardJones
from exprefine.sampling import BarostatSettings, SamplerSettings, sample
from exprefine.state import State, from_atoms, replicate
from exprefine.trajectory import Trajectory
from exprefine.units import BOLTZMANN_eV_per_K, eV_PER_A3_IN_bar, eV_PER_A3_IN_GPa

SIGMA_A = 3.405
EPSILON_eV = 119.8 * BOLTZMANN_eV_per_K
CUTOFF_A = 8.5
LATTICE_A = 5.26


def lj() -> LennardJones:
    return LennardJones(["Ar"], sigma_A=SIGMA_A, epsilon_eV=EPSILON_eV, cutoff_A=CUTOFF_A)


def strained(state: State, strain: np.ndarray) -> State:
    """Affinely deformed by F = 1 + strain (symmetric)."""
    F = torch.eye(3, dtype=torch.float64) + torch.as_tensor(strain)
    return replace(state, positions=state.positions @ F.T, cell=state.cell @ F.T)


def voigt_to_tensor(v: np.ndarray) -> np.ndarray:
    t = np.zeros((3, 3))
    for a, (i, j) in enumerate(VOIGT_PAIRS):
        t[i, j] = t[j, i] = v[a]
    return t


def test_born_term_equals_finite_differences_of_the_stress():
    # A rattled, sheared cell: the stress is not zero, so the stress terms of dσ/dε matter.
    rng = np.random.default_rng(0)
    atoms = bulk("Ar", "fcc", a=5.3, cubic=True).repeat(2)
    cell = atoms.cell.array.copy()
    cell[1, 0] += 0.3
    atoms.set_cell(cell, scale_atoms=True)
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    state = from_atoms(atoms)
    potential = lj()
    d = strain_derivatives(state, potential, tuple(range(6)))
    born = d.born_eV_per_A3[0].numpy()
    sigma = potential.compute(state, forces=False, stress=True).stress_eV_per_A3[0].detach().numpy()  # type: ignore[union-attr]
    np.testing.assert_allclose(d.stress_eV_per_A3[0].numpy(), [sigma[i, j] for i, j in VOIGT_PAIRS], rtol=1e-12, atol=1e-16)
    np.testing.assert_allclose(born, born.T, atol=1e-14)
    # Cauchy stress of the affinely deformed cell (F = 1 + h S): dσ/dh = C^B:S − σ tr S + S σ + σ S
    h = 1e-5
    worst = 0.0
    for i, j in VOIGT_PAIRS:
        S = np.zeros((3, 3))
        S[i, j] += 0.5
        S[j, i] += 0.5
        plus, minus = (potential.compute(strained(state, s * h * S), forces=False, stress=True).stress_eV_per_A3[0]  # type: ignore[index]
                       .detach().numpy() for s in (1, -1))
        finite_difference = (plus - minus) / (2 * h)
        engineering = np.array([S[0, 0], S[1, 1], S[2, 2], 2 * S[1, 2], 2 * S[0, 2], 2 * S[0, 1]])
        expected = voigt_to_tensor(born @ engineering) - sigma * np.trace(S) + S @ sigma + sigma @ S
        worst = max(worst, float(np.abs(finite_difference - expected).max() / np.abs(expected).max()))
    print(f"largest relative deviation of the Born term from finite differences: {worst:.1e}")
    assert worst < 1e-7


def harmonic_constants_GPa(atoms) -> np.ndarray:
    """[6, 6] zero-temperature Born constants of a perfect LJ lattice by the pair-sum formula
    C_ijkl = (1/V) Σ_pairs (φ'' − φ'/r) r_i r_j r_k r_l / r² (independent of the autograd route)."""
    i, _, D = neighbor_list("ijD", atoms, CUTOFF_A)
    r = np.linalg.norm(D, axis=1)
    x = SIGMA_A / r
    d1 = 4 * EPSILON_eV * (-12 * x**12 + 6 * x**6) / r
    d2 = 4 * EPSILON_eV * (156 * x**12 - 42 * x**6) / r**2
    w = 0.5 * (d2 - d1 / r) / r**2  # each pair is listed twice
    return np.array([[np.sum(w * D[:, a] * D[:, b] * D[:, c] * D[:, e]) for c, e in VOIGT_PAIRS]
                     for a, b in VOIGT_PAIRS]) / atoms.get_volume() * eV_PER_A3_IN_GPa


def low_temperature_values(temperature_K: float, seed: int) -> torch.Tensor:
    """[n_frames, 3 × 11] per-frame moments of C11, C12, C44 (cubic averages) of 4 replicas of
    32-atom LJ argon at ``temperature_K``, 10 ps each."""
    atoms = bulk("Ar", "fcc", a=LATTICE_A, cubic=True).repeat(2)
    settings = SamplerSettings(temperature_K=temperature_K, timestep_fs=10.0, friction_per_ps=5.0,
                               n_equilibration_steps=150, n_production_steps=1000, stride_steps=10, seed=seed)
    trajectory = sample(lj(), replicate(from_atoms(atoms), 4), settings).trajectory
    return torch.cat([ElasticConstant(c, temperature_K, cubic_average=True).evaluate(trajectory, lj())
                      for c in COMPONENTS], dim=1)


COMPONENTS = ("C11", "C12", "C44")


def extrapolated_to_zero(low: ElasticConstant, high: ElasticConstant, values: torch.Tensor,
                         weights: torch.Tensor) -> torch.Tensor:
    """2 C(T) − C(2T) from the moments of both runs side by side ([n, 2k]): the linear extrapolation to 0 K."""
    k = values.shape[1] // 2
    return 2 * low.reduce(values[:, :k], weights) - high.reduce(values[:, k:], weights)


def test_lennard_jones_fcc_at_low_temperature_approaches_the_harmonic_constants():
    # Classical anharmonicity shifts C_ij linearly in T at fixed volume (C44: +0.0024 GPa/K, which
    # is 8 standard errors of runs of this length at any T, since both scale with T). Runs at 1 K
    # and 2 K with the same seed (common random numbers: at low T the trajectories differ mainly by
    # the scale √T) are extrapolated linearly to 0 K; its standard error comes from the same
    # extrapolation done block by block on the paired blocks of both runs.
    harmonic = harmonic_constants_GPa(bulk("Ar", "fcc", a=LATTICE_A, cubic=True).repeat(2))
    expected = {"C11": harmonic[0, 0], "C12": harmonic[0, 1], "C44": harmonic[3, 3]}
    assert expected["C11"] == pytest.approx(harmonic[1, 1], rel=1e-10)
    seed, t_low = 11, 1.0
    low_values, high_values = low_temperature_values(t_low, seed), low_temperature_values(2 * t_low, seed)
    n, k = low_values.shape[0], low_values.shape[1] // 3
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    for m, component in enumerate(COMPONENTS):
        low = ElasticConstant(component, t_low, cubic_average=True)
        high = ElasticConstant(component, 2 * t_low, cubic_average=True)
        paired = torch.cat([low_values[:, m * k:(m + 1) * k], high_values[:, m * k:(m + 1) * k]], dim=1)
        extrapolate = partial(extrapolated_to_zero, low, high)
        value = float(extrapolate(paired, weights))
        se = float(block_standard_error(paired, 10, extrapolate))
        at_low = float(low.reduce(paired[:, :k], weights))
        reference = expected[component]
        print(f"{component}: harmonic {reference:.5f} GPa, {t_low:g} K {at_low:.5f}, extrapolated to 0 K "
              f"{value:.5f} ± {se:.5f} ({(value - reference) / se:+.1f} SE; seed {seed})")
        assert abs(value - reference) < 4 * se
        assert se < 2e-4 * reference
        assert abs(at_low - reference) < 0.005 * reference  # within 0.5 % already at 1 K


def test_bulk_modulus_of_gaussian_volume_fluctuations():
    # K_T = k_B T ⟨V⟩ / Var(V): volumes drawn with a known variance
    rng = np.random.default_rng(1)
    temperature_K, mean_V, var_V = 300.0, 1000.0, 4.0
    volumes = torch.as_tensor(rng.normal(mean_V, var_V**0.5, size=20000))
    values = torch.stack([volumes, volumes**2], dim=1)
    obs = BulkModulus(temperature_K)
    weights = torch.full((len(volumes),), 1.0 / len(volumes), dtype=torch.float64)
    expected = BOLTZMANN_eV_per_K * temperature_K * mean_V / var_V * eV_PER_A3_IN_GPa
    value = float(obs.reduce(values, weights))
    se = float(block_standard_error(values, 10, obs.reduce))
    assert abs(value - expected) < 4 * se
    assert se < 0.02 * expected


def _trajectory(npt: bool) -> Trajectory:
    state = from_atoms(bulk("Ar", "fcc", a=LATTICE_A, cubic=True))
    return Trajectory(positions_A=state.positions[None], cells_A=state.cell, pbc=torch.ones(3, dtype=torch.bool),
                      atomic_numbers=state.atomic_numbers, masses_amu=state.masses,
                      energies_eV=torch.zeros(1, dtype=torch.float64), kT_eV=BOLTZMANN_eV_per_K * 50.0,
                      fingerprint="t", pressure_eV_per_A3=1.0 / eV_PER_A3_IN_bar if npt else None)


def test_ensemble_and_component_checks():
    assert parse_component("C21") == (0, 1)
    assert ElasticConstant("C21", 50.0).component == "C12"
    with pytest.raises(ValueError, match="C<i><j>"):
        parse_component("C17")
    with pytest.raises(ValueError, match="cubic_average is for C11, C12 and C44"):
        ElasticConstant("C15", 50.0, cubic_average=True)
    with pytest.raises(ValueError, match="needs NVT frames"):
        ElasticConstant("C11", 50.0).check(_trajectory(npt=True))
    with pytest.raises(ValueError, match="temperature_K = 60 K"):
        ElasticConstant("C11", 60.0).check(_trajectory(npt=False))
    with pytest.raises(ValueError, match="needs NPT frames"):
        BulkModulus(50.0).check(_trajectory(npt=False))


def test_targets_in_the_config_carry_units():
    t = TargetConfig.model_validate({"name": "c44", "observable": {"kind": "elastic_constant", "component": "C44",
                                     "cubic_average": True}, "value_GPa": 79.6, "sigma_GPa": 1.0})
    target = build_target(t, 300.0)
    assert isinstance(target.observable, ElasticConstant) and target.observable.pairs == ((3, 3), (4, 4), (5, 5))
    assert float(target.reference) == 79.6 and float(target.sigma) == 1.0  # type: ignore[arg-type]
    assert t.model_dump()["value_GPa"] == 79.6
    k = TargetConfig.model_validate({"name": "k", "observable": {"kind": "bulk_modulus"}, "value_GPa": 98.0})
    assert isinstance(build_target(k, 300.0).observable, BulkModulus)
    with pytest.raises(ValueError, match="value_GPa"):
        TargetConfig.model_validate({"name": "c", "observable": {"kind": "elastic_constant", "component": "C11"},
                                     "value_bar": 1.0})


@pytest.mark.slow  # ~20 s: 4 × 35 ps of NPT for the volume fluctuations
def test_bulk_modulus_from_volume_fluctuations_agrees_with_the_stress_fluctuation_constants():
    # LJ argon at 20 K, 1 bar: K_T = k_B T ⟨V⟩/Var(V) from NPT (stochastic cell rescaling) against
    # (C11 + 2 C12)/3 from NVT stress fluctuations in the cubic cell of the mean NPT volume
    # (the pressure correction P/3 is 3e-5 GPa here). Measured: 2.35 ± 0.26 vs 2.380 ± 0.017 GPa.
    temperature_K, seed = 20.0, 2
    start = replicate(from_atoms(bulk("Ar", "fcc", a=5.30, cubic=True).repeat(2)), 4)
    barostat = BarostatSettings(pressure_bar=1.0, compressibility_per_bar=3e-5, time_fs=300.0, interval_steps=2)
    npt = sample(lj(), start, SamplerSettings(temperature_K=temperature_K, timestep_fs=10.0, friction_per_ps=5.0,
                                              n_equilibration_steps=500, n_production_steps=3000, stride_steps=10,
                                              seed=seed, barostat=barostat)).trajectory

    def mean_and_error(obs, trajectory, potential=None) -> tuple[float, float]:
        values = obs.evaluate(trajectory, potential)
        n = values.shape[0]
        value = float(obs.reduce(values, torch.full((n,), 1.0 / n, dtype=torch.float64)))
        return value, float(block_standard_error(values, 10, obs.reduce))

    k_volume, se_volume = mean_and_error(BulkModulus(temperature_K), npt)
    lattice_A = float(npt.volumes_A3().mean()) ** (1 / 3) / 2
    nvt_start = replicate(from_atoms(bulk("Ar", "fcc", a=lattice_A, cubic=True).repeat(2)), 4)
    nvt = sample(lj(), nvt_start, SamplerSettings(temperature_K=temperature_K, timestep_fs=10.0, friction_per_ps=5.0,
                                                  n_equilibration_steps=200, n_production_steps=1500, stride_steps=10,
                                                  seed=seed + 1)).trajectory
    c11, se11 = mean_and_error(ElasticConstant("C11", temperature_K, cubic_average=True), nvt, lj())
    c12, se12 = mean_and_error(ElasticConstant("C12", temperature_K, cubic_average=True), nvt, lj())
    k_stress, se_stress = (c11 + 2 * c12) / 3, (se11**2 + 4 * se12**2) ** 0.5 / 3
    print(f"K_T: volume fluctuations {k_volume:.3f} ± {se_volume:.3f} GPa, (C11 + 2 C12)/3 {k_stress:.3f} ± "
          f"{se_stress:.3f} GPa (a = {lattice_A:.4f} Å, seed {seed})")
    assert abs(k_volume - k_stress) < 4 * (se_volume**2 + se_stress**2) ** 0.5
    assert se_volume < 0.15 * k_stress
