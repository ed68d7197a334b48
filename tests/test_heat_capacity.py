"""Heat capacity: C_V of a harmonic (Einstein) solid equals 3 N k_B within its standard error; units; checks.
Also lattice parameters of a triclinic cell and the thermal expansion of two runs."""

from __future__ import annotations

import pytest
import torch
from ase.build import bulk

from exprefine.blocking import block_standard_error
from exprefine.builders import build_target
from exprefine.config import TargetConfig
from exprefine.observables import HeatCapacity, LatticeParameter, linear_thermal_expansion
from exprefine.potentials import Potential
from exprefine.sampling import SamplerSettings, sample
from exprefine.state import State, from_atoms, replicate
from exprefine.trajectory import Trajectory
from exprefine.units import AVOGADRO_per_mol, BOLTZMANN_eV_per_K, eV_IN_J, eV_PER_A3_IN_bar

#: gas constant R = N_A k_B in J/(mol K)
R_J_PER_MOL_K = AVOGADRO_per_mol * BOLTZMANN_eV_per_K * eV_IN_J


class EinsteinSolid(Potential):
    """U = (k/2) Σ_i |x_i − x_i⁰|²: every atom tethered to its site (exactly harmonic), k in eV/Å²."""

    def __init__(self, sites_A: torch.Tensor, spring_eV_per_A2: float) -> None:
        super().__init__()
        self.register_buffer("sites", sites_A.to(torch.float64))
        self.log_k = torch.nn.Parameter(torch.tensor([spring_eV_per_A2], dtype=torch.float64).log())

    def energy(self, state: State) -> torch.Tensor:
        n = self.sites.shape[0]
        u = state.positions.reshape(state.n_systems, n, 3) - self.sites.to(state.dtype)
        return 0.5 * self.log_k.exp() * (u * u).sum(dim=(1, 2))


def test_heat_capacity_of_a_harmonic_solid_is_3_N_k_B():
    atoms = bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2)
    start = from_atoms(atoms)
    potential = EinsteinSolid(start.positions, 1.0)
    temperature_K, seed = 50.0, 5
    settings = SamplerSettings(temperature_K=temperature_K, timestep_fs=10.0, friction_per_ps=10.0,
                               n_equilibration_steps=100, n_production_steps=4000, stride_steps=5, seed=seed,
                               min_distance_A=0.0)
    trajectory = sample(potential, replicate(start, 4), settings).trajectory
    obs = HeatCapacity(temperature_K, per="mole")
    values = obs.evaluate(trajectory, potential)
    n = values.shape[0]
    weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
    value = float(obs.reduce(values, weights))
    se = float(block_standard_error(values, 10, obs.reduce))
    print(f"C_V of a 32-atom Einstein solid at {temperature_K} K: {value:.3f} ± {se:.3f} J/(mol K), "
          f"3R = {3 * R_J_PER_MOL_K:.3f} (seed {seed}, {n} frames)")
    assert abs(value - 3 * R_J_PER_MOL_K) < 4 * se
    assert se < 0.05 * 3 * R_J_PER_MOL_K
    per_gram = float(HeatCapacity(temperature_K, per="gram").reduce(values, weights))
    assert per_gram == pytest.approx(value / 39.948, rel=1e-4)  # argon: 39.948 g/mol
    assert obs.unit == "J/(mol K)" and obs.name == "heat_capacity_v"


def test_kinetic_part_alone_is_three_halves_R():
    # frames with no energy fluctuation: only the analytic kinetic part (3/2) N k_B remains
    values = torch.tensor([[-5.0, 25.0, 32.0, 32 * 39.948]] * 4, dtype=torch.float64)
    weights = torch.full((4,), 0.25, dtype=torch.float64)
    assert float(HeatCapacity(100.0).reduce(values, weights)) == pytest.approx(1.5 * R_J_PER_MOL_K, rel=1e-12)


def _trajectory(pressure_bar: float | None) -> Trajectory:
    state = from_atoms(bulk("Ar", "fcc", a=5.26, cubic=True))
    return Trajectory(positions_A=state.positions[None], cells_A=state.cell, pbc=torch.ones(3, dtype=torch.bool),
                      atomic_numbers=state.atomic_numbers, masses_amu=state.masses,
                      energies_eV=torch.zeros(1, dtype=torch.float64), kT_eV=BOLTZMANN_eV_per_K * 100.0,
                      fingerprint="t",
                      pressure_eV_per_A3=None if pressure_bar is None else pressure_bar / eV_PER_A3_IN_bar)


def test_ensemble_checks():
    HeatCapacity(100.0).check(_trajectory(None))
    HeatCapacity(100.0, pressure_bar=1.0).check(_trajectory(1.0))
    with pytest.raises(ValueError, match="C_V needs NVT frames"):
        HeatCapacity(100.0).check(_trajectory(1.0))
    with pytest.raises(ValueError, match="C_P needs NPT frames"):
        HeatCapacity(100.0, pressure_bar=1.0).check(_trajectory(None))
    with pytest.raises(ValueError, match="pressure_bar = 2"):
        HeatCapacity(100.0, pressure_bar=2.0).check(_trajectory(1.0))
    with pytest.raises(ValueError, match="per must be one of"):
        HeatCapacity(100.0, per="kg")


def test_lattice_parameters_of_a_triclinic_cell():
    atoms = bulk("Si", "diamond", a=5.43, cubic=True).repeat((2, 3, 1))
    cell = atoms.cell.array.copy()
    cell[1] += [1.0, 0.0, 0.0]
    atoms.set_cell(cell)
    state = from_atoms(atoms)
    assert float(LatticeParameter("a", repeats=2).per_frame(state)[0]) == pytest.approx(5.43, rel=1e-12)
    b = (3 * 5.43) ** 2 + 1.0
    assert float(LatticeParameter("b", repeats=3).per_frame(state)[0]) == pytest.approx(b**0.5 / 3, rel=1e-12)
    assert float(LatticeParameter("alpha").per_frame(state)[0]) == pytest.approx(90.0, abs=1e-10)
    gamma = torch.rad2deg(torch.arccos(torch.tensor(1.0 / b**0.5, dtype=torch.float64)))
    assert float(LatticeParameter("gamma").per_frame(state)[0]) == pytest.approx(float(gamma), rel=1e-12)
    with pytest.raises(ValueError, match="repeats is for lengths"):
        LatticeParameter("beta", repeats=2)


def test_targets_in_the_config_carry_units():
    cp = TargetConfig.model_validate({"name": "cp", "observable": {"kind": "heat_capacity", "per": "gram",
                                      "pressure_bar": 1.0}, "value_J_per_g_K": 0.71, "sigma_J_per_g_K": 0.01})
    target = build_target(cp, 300.0)
    assert isinstance(target.observable, HeatCapacity) and target.observable.pressure_bar == 1.0
    assert cp.model_dump()["value_J_per_g_K"] == 0.71
    with pytest.raises(ValueError, match="value_J_per_mol_K"):
        TargetConfig.model_validate({"name": "cv", "observable": {"kind": "heat_capacity"}, "value_J_per_g_K": 0.7})
    a = TargetConfig.model_validate({"name": "a", "observable": {"kind": "lattice_parameter", "parameter": "a",
                                     "repeats": 3}, "value_A": 5.431, "sigma_A": 0.001})
    assert isinstance(build_target(a, 300.0).observable, LatticeParameter)
    with pytest.raises(ValueError, match="value_deg"):
        TargetConfig.model_validate({"name": "g", "observable": {"kind": "lattice_parameter", "parameter": "gamma"},
                                     "value_A": 90.0})


def test_linear_thermal_expansion_from_two_runs():
    # silicon-like numbers: a = 5.4300 ± 0.0002 Å at 100 K, 5.4313 ± 0.0002 Å at 300 K
    te = linear_thermal_expansion(5.4300, 0.0002, 100.0, 5.4313, 0.0002, 300.0)
    mean = 0.5 * (5.4300 + 5.4313)
    assert te.alpha_per_K == pytest.approx(0.0013 / (mean * 200.0), rel=1e-12)
    assert te.standard_error_per_K == pytest.approx(0.0002 * 2**0.5 / (mean * 200.0), rel=1e-12)
    assert te.temperature_K == 200.0
    with pytest.raises(ValueError, match="must differ"):
        linear_thermal_expansion(5.43, 0.0, 300.0, 5.43, 0.0, 300.0)
