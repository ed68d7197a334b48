"""The Stillinger–Weber three-body term and the repulsive r⁻¹² prior: closed forms, a
brute-force periodic reference, the generic potential checks, and the effect of the
angular term on the bond-angle distribution of a short MD run."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from exprefine.builders import build_potential
from exprefine.config import parse_config
from exprefine.observables import AngularDistribution
from exprefine.potentials import RepulsivePrior, StillingerWeberThreeBody, SumPotential
from exprefine.sampling import SamplerSettings, sample
from exprefine.state import from_atoms
from exprefine.testing import check_gradient_wrt_parameters, check_potential
from exprefine.units import kJ_PER_MOL_IN_eV

# mW-like geometry: σ = 2.3925 Å, a = 1.8 (cutoff 4.3065 Å), γ = 1.2
SIGMA_A, A, GAMMA = 2.3925, 1.8, 1.2
CUTOFF_A = SIGMA_A * A
WATER_NUMBER_DENSITY_PER_A3 = 0.99828 / 18.015 * 0.602214076  # g/cm³ → molecules/Å³


def _sw(lambda_epsilon_eV: float = 0.3, cos_theta0: float = -1.0 / 3.0, gamma: float = GAMMA,
        species=("O",), trainable=True) -> StillingerWeberThreeBody:
    return StillingerWeberThreeBody(list(species), lambda_epsilon_eV, cos_theta0, gamma, SIGMA_A, A,
                                    trainable=trainable)


def _cluster(positions, symbols=None) -> Atoms:
    positions = np.asarray(positions, dtype=float)
    symbols = symbols or ["O"] * len(positions)
    return Atoms(symbols, positions=positions, cell=np.eye(3) * 40.0, pbc=False)


def _f(r: float) -> float:
    return math.exp(GAMMA * SIGMA_A / (r - CUTOFF_A)) if r < CUTOFF_A else 0.0


def _triplet(r1: float, r2: float, theta_rad: float) -> Atoms:
    """Centre at the origin, neighbours at r1 on x and r2 at angle θ in the xy plane."""
    return _cluster([[0.0, 0.0, 0.0], [r1, 0.0, 0.0], [r2 * math.cos(theta_rad), r2 * math.sin(theta_rad), 0.0]])


def _energy(potential, atoms) -> float:
    return float(potential.energy(from_atoms(atoms)).detach()[0])


def _brute_force_energy(atoms: Atoms, lambda_epsilon: float, cos_theta0: float, n_images: int = 2) -> float:
    """Σ_i Σ_{j<k} over all neighbours (periodic images included) by explicit loops."""
    pos = atoms.get_positions()
    cell = atoms.cell.array
    shifts = [np.array(s) for s in itertools.product(range(-n_images, n_images + 1), repeat=3)]
    total = 0.0
    for i in range(len(atoms)):
        neighbours = []
        for j in range(len(atoms)):
            for s in shifts:
                if j == i and not s.any():
                    continue
                v = pos[j] + s @ cell - pos[i]
                if np.linalg.norm(v) < CUTOFF_A:
                    neighbours.append(v)
        for v, w in itertools.combinations(neighbours, 2):
            rv, rw = np.linalg.norm(v), np.linalg.norm(w)
            cos = v @ w / (rv * rw)
            total += lambda_epsilon * (cos - cos_theta0) ** 2 * _f(rv) * _f(rw)
    return total


def _liquid_like(n_side: int = 3, seed: int = 0, triclinic: bool = True, rattle_A: float = 0.35) -> Atoms:
    """n³ one-site waters at the density of water: a rattled simple-cubic lattice, optionally sheared."""
    spacing = WATER_NUMBER_DENSITY_PER_A3 ** (-1.0 / 3.0)
    atoms = Atoms("O", cell=np.eye(3) * spacing, pbc=True).repeat((n_side, n_side, n_side))
    if triclinic:
        strain = np.array([[1.0, 0.04, -0.03], [0.0, 0.98, 0.05], [0.02, 0.0, 1.02]])
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    if rattle_A > 0:
        atoms.rattle(rattle_A, seed=seed)
    atoms.set_masses([18.015] * len(atoms))
    return atoms


# ------------------------------------------------------------------ closed forms
def test_single_triplet_equals_closed_form():
    # j and k are 2.8 and 3.1 Å from the centre at 95°: |r_jk| = 4.38 Å > aσ, one triplet only
    r1, r2, theta = 2.8, 3.1, math.radians(95.0)
    pot = _sw(lambda_epsilon_eV=0.7, cos_theta0=-0.25, gamma=1.3)
    expected = 0.7 * (math.cos(theta) + 0.25) ** 2 * math.exp(1.3 * SIGMA_A / (r1 - CUTOFF_A)) \
        * math.exp(1.3 * SIGMA_A / (r2 - CUTOFF_A))
    got = _energy(pot, _triplet(r1, r2, theta))
    assert expected > 1e-4
    assert got == pytest.approx(expected, rel=1e-12)


def test_energy_zero_at_theta0_and_beyond_cutoff():
    theta0 = math.radians(100.0)
    pot = _sw(lambda_epsilon_eV=1.0, cos_theta0=math.cos(theta0))
    assert abs(_energy(pot, _triplet(2.8, 2.9, theta0))) < 1e-15
    # the same triplet 5° off θ₀ does cost energy ...
    assert _energy(pot, _triplet(2.8, 2.9, theta0 + math.radians(5.0))) > 1e-5
    # ... unless one neighbour sits at or beyond the cutoff aσ
    inside = _energy(pot, _triplet(2.8, CUTOFF_A - 0.3, math.radians(150.0)))
    assert inside > 0.0
    assert _energy(pot, _triplet(2.8, CUTOFF_A + 1e-9, math.radians(150.0))) == 0.0
    assert _energy(pot, _triplet(2.8, CUTOFF_A + 0.5, math.radians(150.0))) == 0.0


def test_periodic_energy_matches_brute_force_with_images():
    # a small triclinic cell (heights < 2aσ): atoms see several images of each other and of themselves
    atoms = _liquid_like(n_side=2, seed=3)
    assert min(atoms.cell.cellpar()[:3]) < 2 * CUTOFF_A
    pot = _sw(lambda_epsilon_eV=0.4, cos_theta0=-0.3)
    expected = _brute_force_energy(atoms, 0.4, -0.3)
    assert expected > 1e-3
    assert _energy(pot, atoms) == pytest.approx(expected, rel=1e-11)


def test_other_species_are_ignored():
    # an O–O–O term next to a hydrogen: the H atom is neither centre nor neighbour
    r1, r2, theta = 2.8, 3.0, math.radians(80.0)
    o_only = _triplet(r1, r2, theta)
    with_h = _cluster(list(o_only.get_positions()) + [[0.5, 0.6, 0.3]], ["O", "O", "O", "H"])
    pot = _sw()
    assert _energy(pot, o_only) > 1e-5
    assert _energy(pot, with_h) == pytest.approx(_energy(pot, o_only), rel=1e-14)


def test_tetrahedral_arrangement_has_zero_energy():
    # diamond lattice: four neighbours at 2.8 Å with cos θ = −1/3; next shell at 4.57 Å > aσ
    a = 2.8 * 4.0 / math.sqrt(3.0)
    atoms = bulk("C", "diamond", a=a, cubic=True).repeat((2, 2, 2))
    atoms.set_chemical_symbols(["O"] * len(atoms))
    tetrahedral = _sw(lambda_epsilon_eV=5.0, cos_theta0=-1.0 / 3.0)
    out = tetrahedral.compute(from_atoms(atoms), forces=True, stress=True)
    assert abs(float(out.energy_eV[0])) < 1e-12
    assert float(out.forces_eV_per_A.abs().max()) < 1e-10
    assert float(out.stress_eV_per_A3.abs().max()) < 1e-12
    # the same lattice with another θ₀ is penalised: 6 triplets per atom, all at cos θ = −1/3
    other = _sw(lambda_epsilon_eV=5.0, cos_theta0=-0.2)
    expected = len(atoms) * 6 * 5.0 * (-1.0 / 3.0 + 0.2) ** 2 * _f(2.8) ** 2
    assert _energy(other, atoms) == pytest.approx(expected, rel=1e-12)


def test_repulsive_prior_closed_form_and_shift():
    eps = 1.0 * kJ_PER_MOL_IN_eV
    prior = RepulsivePrior(["O"], 3.165, eps, cutoff_A=6.0)
    r = 3.0
    expected = 4 * eps * ((3.165 / r) ** 12 - (3.165 / 6.0) ** 12)
    assert _energy(prior, _cluster([[0, 0, 0], [r, 0, 0]])) == pytest.approx(expected, rel=1e-13)
    assert _energy(prior, _cluster([[0, 0, 0], [6.0 - 1e-9, 0, 0]])) == pytest.approx(0.0, abs=1e-12)
    assert _energy(prior, _cluster([[0, 0, 0], [6.5, 0, 0]])) == 0.0
    assert not any(p.requires_grad for p in prior.parameters())


# ------------------------------------------------------------- generic checks
def test_check_potential_three_body_and_prior():
    atoms = _liquid_like(n_side=3, seed=1)
    state = from_atoms(atoms)
    pot = _sw(lambda_epsilon_eV=2.0, cos_theta0=-0.3)
    # the rattled lattice must hold many triplets with substantial forces for the check to mean something
    out = pot.compute(state, forces=True)
    assert float(out.energy_eV[0]) > 0.1 and float(out.forces_eV_per_A.abs().max()) > 0.05
    report = check_potential(pot, state)
    assert report.force_fd_error_eV_per_A < 1e-6
    assert report.stress_fd_error_eV_per_A3 is not None and report.stress_fd_error_eV_per_A3 < 1e-8
    check_potential(pot, state, dtype=torch.float32)  # the moment form's cancellation is harmless in float32
    prior = RepulsivePrior(["O"], 3.165, 0.25 * kJ_PER_MOL_IN_eV, cutoff_A=5.0)
    check_potential(SumPotential([prior, pot]), state)


def test_gradient_wrt_parameters():
    atoms = _liquid_like(n_side=3, seed=2)
    pot = _sw(lambda_epsilon_eV=1.5, cos_theta0=-0.2, gamma=1.1)
    report = check_gradient_wrt_parameters(pot, from_atoms(atoms))
    assert set(report.max_error_by_parameter) == {"log_lambda_epsilon", "cos_theta0", "log_gamma"}
    # dE/d ln(λε) = E exactly
    state = from_atoms(atoms)
    energy = pot.energy(state).sum()
    (grad,) = torch.autograd.grad(energy, [pot.log_lambda_epsilon])
    assert float(grad) == pytest.approx(float(energy.detach()), rel=1e-12)


def test_trainable_subset_and_summary():
    pot = _sw(trainable=["cos_theta0"])
    assert [n for n, p in pot.named_parameters() if p.requires_grad] == ["cos_theta0"]
    s = pot.summary()
    assert s["theta0_deg"] == pytest.approx(109.4712206, abs=1e-6)
    assert s["lambda_epsilon_kJ_per_mol"] == pytest.approx(0.3 / kJ_PER_MOL_IN_eV)
    with pytest.raises(ValueError, match="unknown parameter"):
        _sw(trainable=["theta0"])


def test_config_builds_both_terms():
    raw = {
        "run_dir": "runs/x",
        "system": {"lattice": {"element": "O", "number_density_per_A3": 0.033}},
        "potential": {"terms": [
            {"kind": "repulsive_r12", "species": ["O"], "sigma_A": 3.165, "epsilon_kJ_per_mol": 0.25,
             "cutoff_A": 5.0},
            {"kind": "stillinger_weber_3b", "species": ["O"], "epsilon_kJ_per_mol": 25.895, "lambda_": 23.15,
             "theta0_deg": 109.47, "gamma": 1.2, "sigma_A": 2.3925, "a": 1.8},
        ]},
        "sampling": {"temperature_K": 296.15, "timestep_fs": 2.0, "equilibration_ps": 1.0,
                     "production_ps": 1.0, "frame_interval_fs": 100.0},
    }
    pot = build_potential(parse_config(raw))
    prior, sw = pot.terms
    assert float(prior.epsilon_eV[0]) == pytest.approx(0.25 * kJ_PER_MOL_IN_eV)
    assert float(sw.lambda_epsilon_eV.detach()) == pytest.approx(23.15 * 25.895 * kJ_PER_MOL_IN_eV)
    assert float(sw.cos_theta0.detach()) == pytest.approx(math.cos(math.radians(109.47)))
    assert sw.cutoff_A == pytest.approx(4.3065)
    raw["potential"]["terms"][1]["cos_theta0"] = -0.3  # both angle keys: refused
    with pytest.raises(ValueError, match="exactly one of cos_theta0 and theta0_deg"):
        parse_config(raw)


# ------------------------------------------------------------------------- MD
def _adf_peak_deg(potential, atoms, seed: int) -> float:
    """Angle (°) of the maximum of the O–O–O ADF (first shell, r < 3.18 Å) of a short Langevin run."""
    settings = SamplerSettings(integrator="baoab", temperature_K=296.15, timestep_fs=4.0, friction_per_ps=10.0,
                               n_equilibration_steps=800, n_production_steps=600, stride_steps=10, seed=seed)
    trajectory = sample(potential, from_atoms(atoms), settings).trajectory
    adf = AngularDistribution(("O", "O", "O"), r_max_A=3.18, n_bins=36, smoothing_deg=10.0)
    p = adf.evaluate(trajectory).mean(dim=0)
    return float(adf.grid()[int(p.argmax())])


def test_three_body_term_moves_adf_peak_towards_theta0():
    # 64 waters from a simple-cubic lattice (12.4 Å box): ≈ 6 s for both runs on one core
    atoms = _liquid_like(n_side=4, triclinic=False, rattle_A=0.0)
    prior = RepulsivePrior(["O"], 3.165, 1.0 * kJ_PER_MOL_IN_eV, cutoff_A=5.0)
    theta0 = math.degrees(math.acos(-1.0 / 3.0))
    strong = StillingerWeberThreeBody(["O"], 20.0, -1.0 / 3.0, GAMMA, SIGMA_A, A)
    peak_prior = _adf_peak_deg(prior, atoms, seed=1)  # packing of soft spheres: ≈ 70°
    peak_3b = _adf_peak_deg(SumPotential([prior, strong]), atoms, seed=1)  # ≈ 105–115°
    assert abs(peak_3b - theta0) < 15.0
    assert abs(peak_3b - theta0) < abs(peak_prior - theta0) - 15.0
