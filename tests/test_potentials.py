"""Lennard-Jones against ASE and a direct double loop, the cubic-spline pair potential,
the generic potential checks, and the ASE calculator in NVE molecular dynamics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, molecule
from ase.calculators.calculator import PropertyNotImplementedError
from ase.calculators.lj import LennardJones as AseLennardJones
from ase.md.velocitydistribution import Stationary
from ase.md.verlet import VelocityVerlet

from exprefine.potentials import ExprefineCalculator, LennardJones, PairSpline, SumPotential
from exprefine.state import from_atoms
from exprefine.testing import check_gradient_wrt_parameters, check_potential

SIGMA_A, EPSILON_eV, CUTOFF_A = 3.405, 0.0103, 8.5
R_MIN_A = 3.0


def _argon_crystal(seed: int = 0, repeat: int = 3) -> Atoms:
    """Rattled fcc argon in a strained (general triclinic) primitive supercell."""
    atoms = bulk("Ar", "fcc", a=5.26) * (repeat, repeat, repeat)
    strain = np.array([[1.02, 0.03, -0.02], [0.0, 0.99, 0.04], [0.01, -0.03, 1.01]])
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def _argon_krypton(seed: int = 0) -> Atoms:
    atoms = _argon_crystal(seed, repeat=2)
    rng = np.random.default_rng(seed)
    symbols = np.array(["Ar"] * len(atoms))
    symbols[rng.permutation(len(atoms))[: len(atoms) // 2]] = "Kr"
    atoms.set_chemical_symbols(symbols.tolist())
    return atoms


def _lj(r: np.ndarray, sigma: float = SIGMA_A, epsilon: float = EPSILON_eV) -> np.ndarray:
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * (s6 * s6 - s6)


def _lj_derivative(r: np.ndarray, sigma: float = SIGMA_A, epsilon: float = EPSILON_eV) -> np.ndarray:
    s6 = (sigma / r) ** 6
    return 4.0 * epsilon * (-12.0 * s6 * s6 + 6.0 * s6) / r


def _shifted_force_lj(r: np.ndarray) -> np.ndarray:
    """LJ with value and slope shifted to zero at the cutoff (what a zero-slope spline can reproduce)."""
    return _lj(r) - _lj(np.array(CUTOFF_A)) - (r - CUTOFF_A) * _lj_derivative(np.array(CUTOFF_A))


def _random_spline(species, seed: int = 0, n_knots: int = 12) -> PairSpline:
    spline = PairSpline(species, CUTOFF_A, R_MIN_A, n_knots)
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        spline.values_eV.copy_(torch.from_numpy(rng.normal(scale=0.01, size=tuple(spline.values_eV.shape))))
    return spline


# ---------------------------------------------------------------- Lennard-Jones
def test_lennard_jones_matches_ase():
    atoms = _argon_crystal()
    atoms.calc = AseLennardJones(sigma=SIGMA_A, epsilon=EPSILON_eV, rc=CUTOFF_A, smooth=False)
    out = LennardJones(["Ar"], SIGMA_A, EPSILON_eV, CUTOFF_A).compute(from_atoms(atoms), forces=True, stress=True)
    energy = atoms.get_potential_energy()
    forces = atoms.get_forces()
    stress = atoms.get_stress(voigt=False)
    assert float(out.energy_eV[0]) == pytest.approx(energy, rel=1e-10)
    np.testing.assert_allclose(out.forces_eV_per_A.numpy(), forces, rtol=0, atol=1e-10 * np.abs(forces).max())
    np.testing.assert_allclose(out.stress_eV_per_A3[0].numpy(), stress, rtol=0, atol=1e-10 * np.abs(stress).max())


def _binary_lj_reference(atoms: Atoms, sigma: dict, epsilon: dict, cutoff: float):
    """Energy, forces and stress of shifted LJ by a direct loop over atom pairs and cell images."""
    pos, cell, sym = atoms.get_positions(), atoms.cell.array, atoms.get_chemical_symbols()
    n = len(atoms)
    images = np.array([(a, b, c) for a in range(-2, 3) for b in range(-2, 3) for c in range(-2, 3)]) @ cell
    energy, forces, virial = 0.0, np.zeros((n, 3)), np.zeros((3, 3))
    for i in range(n):
        for j in range(n):
            key = tuple(sorted((sym[i], sym[j])))
            s, e = sigma[key], epsilon[key]
            vec = pos[j] - pos[i] + images
            r = np.linalg.norm(vec, axis=1)
            keep = (r < cutoff) & (r > 1e-8)
            vec, r = vec[keep], r[keep]
            energy += 0.5 * np.sum(_lj(r, s, e) - _lj(np.array(cutoff), s, e))
            dphi = _lj_derivative(r, s, e)
            forces[i] += np.sum((dphi / r)[:, None] * vec, axis=0)
            virial += 0.5 * np.einsum("p,pa,pb->ab", dphi / r, vec, vec)
    return energy, forces, virial / atoms.get_volume()


def test_binary_lennard_jones_matches_double_loop():
    atoms = _argon_krypton()
    cutoff = 7.5
    sigma = {("Ar", "Ar"): 3.405, ("Ar", "Kr"): 3.5, ("Kr", "Kr"): 3.65}
    epsilon = {("Ar", "Ar"): 0.0103, ("Ar", "Kr"): 0.0125, ("Kr", "Kr"): 0.0141}
    keys = [("Ar", "Ar"), ("Ar", "Kr"), ("Kr", "Kr")]  # upper triangle of species [Ar, Kr]
    pot = LennardJones(["Ar", "Kr"], [sigma[k] for k in keys], [epsilon[k] for k in keys], cutoff)
    out = pot.compute(from_atoms(atoms), forces=True, stress=True)
    energy, forces, stress = _binary_lj_reference(atoms, sigma, epsilon, cutoff)
    assert float(out.energy_eV[0]) == pytest.approx(energy, rel=1e-10)
    np.testing.assert_allclose(out.forces_eV_per_A.numpy(), forces, rtol=0, atol=1e-10 * np.abs(forces).max())
    np.testing.assert_allclose(out.stress_eV_per_A3[0].numpy(), stress, rtol=0, atol=1e-10 * np.abs(stress).max())
    # swapping the species order permutes the pair parameters but not the physics
    swapped = LennardJones(["Kr", "Ar"], [sigma[k] for k in keys[::-1]], [epsilon[k] for k in keys[::-1]], cutoff)
    assert float(swapped.energy(from_atoms(atoms)).detach()[0]) == pytest.approx(energy, rel=1e-12)


def test_unknown_element_is_named():
    with pytest.raises(ValueError, match="Kr"):
        LennardJones(["Ar"], SIGMA_A, EPSILON_eV, CUTOFF_A).energy(from_atoms(_argon_krypton()))
    with pytest.raises(ValueError, match="Kr"):
        PairSpline(["Ar"], CUTOFF_A, R_MIN_A, 8).energy(from_atoms(_argon_krypton()))
    with pytest.raises(ValueError, match="Qq"):
        PairSpline(["Ar", "Qq"], CUTOFF_A, R_MIN_A, 8)


# ----------------------------------------------------------------------- spline
def _orders(errors: list[float]) -> np.ndarray:
    """Observed orders p of e ∝ h^p when h halves from one entry to the next."""
    return np.log2(np.array(errors[:-1]) / np.array(errors[1:]))


def test_spline_interpolation_error_is_fourth_order():
    # g satisfies the boundary conditions (g''(r_min) = 0, g(r_c) = g'(r_c) = 0): O(h⁴) everywhere
    length = CUTOFF_A - R_MIN_A

    def g(r):
        return 0.05 * (1.0 + np.sin(1.5 * np.pi * (r - R_MIN_A) / length))

    r = np.linspace(R_MIN_A, CUTOFF_A, 3001)
    errors = []
    for n_knots in (21, 41, 81):
        spline = PairSpline.from_function(["Ar"], g, CUTOFF_A, R_MIN_A, n_knots)
        errors.append(float(np.abs(spline.table(r).detach().numpy()[0] - g(r)).max()))
    assert np.all(np.abs(_orders(errors) - 4.0) < 0.3), errors

    # the LJ tail has φ''(r_min) ≠ 0: the natural condition costs O(h²) near r_min, O(h⁴) inside
    inside = (r > 4.5) & (r < 7.5)
    errors_all, errors_inside = [], []
    for n_knots in (41, 81, 161):
        spline = PairSpline.from_function(["Ar"], _shifted_force_lj, CUTOFF_A, R_MIN_A, n_knots)
        err = np.abs(spline.table(r).detach().numpy()[0] - _shifted_force_lj(r))
        errors_all.append(float(err.max()))
        errors_inside.append(float(err[inside].max()))
    assert np.all(np.abs(_orders(errors_all) - 2.0) < 0.3), errors_all
    assert _orders(errors_inside)[-1] > 3.5, errors_inside
    assert errors_inside[-1] < 1e-9


def test_spline_zero_and_smooth_at_cutoff_and_constant_below_r_min():
    spline = _random_spline(["Ar"], seed=1)
    delta = 1e-4
    r = torch.tensor([CUTOFF_A - delta, CUTOFF_A, CUTOFF_A + 1.0], dtype=torch.float64, requires_grad=True)
    values = spline.table(r)[0]
    (slope,) = torch.autograd.grad(values[0], r)
    values = values.detach()
    assert abs(float(values[0])) < 1e-3 * delta  # zero slope: φ(r_c − δ) = O(δ²)
    assert float(values[1]) == 0.0 and float(values[2]) == 0.0
    assert abs(float(slope[0])) < 1e-2 * delta
    # the natural condition has a slope at the cutoff but is still continuous there
    natural = PairSpline(["Ar"], CUTOFF_A, R_MIN_A, 12, spline.values_eV.detach()[0], boundary_at_cutoff="natural")
    r_near = torch.tensor([CUTOFF_A - delta], dtype=torch.float64, requires_grad=True)
    value = natural.table(r_near)[0, 0]
    natural_slope = float(torch.autograd.grad(value, r_near)[0][0])
    assert abs(natural_slope) > 1e-4 and abs(float(value.detach())) < 2.0 * abs(natural_slope) * delta

    # C¹ and C² across the inner knots
    knots = spline.knots_A()[1:-1]
    left = (knots - 1e-7).requires_grad_(True)
    right = (knots + 1e-7).requires_grad_(True)
    d_left = torch.autograd.grad(spline.table(left).sum(), left, create_graph=True)[0]
    d_right = torch.autograd.grad(spline.table(right).sum(), right, create_graph=True)[0]
    torch.testing.assert_close(d_left, d_right, rtol=0, atol=1e-6)
    dd_left = torch.autograd.grad(d_left.sum(), left)[0]
    dd_right = torch.autograd.grad(d_right.sum(), right)[0]
    torch.testing.assert_close(dd_left, dd_right, rtol=0, atol=1e-5)

    # constant (zero force) below r_min
    below = torch.tensor([0.5, 2.0, R_MIN_A], dtype=torch.float64, requires_grad=True)
    values = spline.table(below)[0]
    assert torch.equal(torch.autograd.grad(values[:2].sum(), below)[0], torch.zeros(3, dtype=torch.float64))
    values = values.detach()
    assert float(values[0]) == float(values[2]) == float(spline.values_eV.detach()[0, 0])


def test_spline_is_linear_in_the_knot_values():
    a, b = _random_spline(["Ar", "Kr"], seed=2), _random_spline(["Ar", "Kr"], seed=3)
    both = PairSpline(["Ar", "Kr"], CUTOFF_A, R_MIN_A, 12, a.values_eV.detach() + b.values_eV.detach())
    r = np.linspace(2.0, 9.0, 301)
    torch.testing.assert_close(both.table(r), a.table(r) + b.table(r), rtol=0, atol=1e-15)
    basis = a.basis(torch.from_numpy(r))
    inside = (torch.from_numpy(r) < CUTOFF_A)[:, None]
    torch.testing.assert_close(basis @ a.knot_values_eV().detach().T, a.table(r).detach().T * inside)


def test_spline_from_function_per_pair_and_least_squares():
    functions = [lambda r: 0.1 / r, lambda r: 0.2 / r, lambda r: np.exp(-r)]
    spline = PairSpline.from_function(["Ar", "Kr"], functions, CUTOFF_A, R_MIN_A, 9)
    knots = spline.knots_A().numpy()
    for k, f in enumerate(functions):
        np.testing.assert_allclose(spline.table(knots[:-1]).detach().numpy()[k], f(knots[:-1]) - f(CUTOFF_A), rtol=1e-12)
    assert spline.summary()["max_abs_eV[Ar-Kr]"] > spline.summary()["max_abs_eV[Ar-Ar]"]
    # least squares on a dense grid has a smaller RMS error than interpolation at the knots
    r = np.linspace(R_MIN_A, CUTOFF_A, 1001)
    rms = {}
    for method in ("interpolate", "least_squares"):
        fitted = PairSpline.from_function(["Ar"], _shifted_force_lj, CUTOFF_A, R_MIN_A, 21, method=method)
        rms[method] = np.sqrt(np.mean((fitted.table(r).detach().numpy()[0] - _shifted_force_lj(r)) ** 2))
    assert rms["least_squares"] < 0.7 * rms["interpolate"], rms
    with pytest.raises(ValueError, match="3 \\(one per species pair\\)"):
        PairSpline.from_function(["Ar", "Kr"], functions[:2], CUTOFF_A, R_MIN_A, 9)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(n_knots=2), "n_knots"),
        (dict(r_min_A=9.0), "r_min_A"),
        (dict(initial_values_eV=np.zeros(5)), "initial_values_eV"),
        (dict(initial_values_eV=np.full(7, np.nan)), "finite"),
        (dict(boundary_at_cutoff="periodic"), "boundary_at_cutoff"),
    ],
)
def test_spline_bad_arguments(kwargs, message):
    args = dict(species=["Ar"], cutoff_A=CUTOFF_A, r_min_A=R_MIN_A, n_knots=8) | kwargs
    with pytest.raises(ValueError, match=message):
        PairSpline(**args)


# ------------------------------------------------------- generic potential checks
def test_check_potential_lennard_jones_spline_and_sum():
    argon = from_atoms(_argon_crystal(seed=5, repeat=2))
    binary = from_atoms(_argon_krypton(seed=6))
    lj = LennardJones(["Ar", "Kr"], [3.405, 3.5, 3.65], [0.0103, 0.0125, 0.0141], CUTOFF_A)
    spline = _random_spline(["Ar", "Kr"], seed=7)
    for potential in (lj, spline, SumPotential([lj, spline])):
        report = check_potential(potential, binary, max_fd_atoms=6)
        assert report.force_fd_error_eV_per_A < 1e-6 and report.stress_fd_error_eV_per_A3 < 1e-8
    check_potential(LennardJones(["Ar"], SIGMA_A, EPSILON_eV, CUTOFF_A), argon, dtype=torch.float32, max_fd_atoms=4)
    # a non-periodic cluster: no stress check
    cluster = from_atoms(Atoms("Ar4", positions=[[0, 0, 0], [3.8, 0, 0], [0, 3.7, 0.2], [0.1, 0.3, 3.9]]))
    assert check_potential(SumPotential([lj, spline]), cluster).stress_fd_error_eV_per_A3 is None

    for potential in (lj, SumPotential([lj, spline])):
        report = check_gradient_wrt_parameters(potential, binary)
        assert report.n_entries_checked > 0
    assert spline.values_eV.dtype == torch.float64  # the checks work on copies


class _ThreadRecorder(LennardJones):
    """Lennard-Jones that notes the thread each energy evaluation ran in (and fails on request)."""

    def __init__(self, *args, fail: bool = False) -> None:
        super().__init__(*args)
        self.threads: list[str] = []
        self.fail = fail

    def energy(self, state):
        import threading

        self.threads.append(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("term failed")
        return super().energy(state)


def test_concurrent_sum_gives_the_sequential_forces_and_stress_from_threads_of_its_own():
    binary = from_atoms(_argon_krypton(seed=11))
    lj = _ThreadRecorder(["Ar", "Kr"], [3.405, 3.5, 3.65], [0.0103, 0.0125, 0.0141], CUTOFF_A)
    spline = _random_spline(["Ar", "Kr"], seed=12)
    sequential, concurrent = SumPotential([lj, spline]), SumPotential([lj, spline], concurrent=True)
    assert not sequential.concurrent and concurrent.concurrent
    ref = sequential.compute(binary, forces=True, stress=True)
    out = concurrent.compute(binary, forces=True, stress=True)
    assert lj.threads[0] == "MainThread" and lj.threads[1].startswith("exprefine-term")
    # linear in the terms: equal up to the order of the additions
    torch.testing.assert_close(out.energy_eV, ref.energy_eV, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.forces_eV_per_A, ref.forces_eV_per_A, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.stress_eV_per_A3, ref.stress_eV_per_A3, rtol=0, atol=1e-14)
    assert not out.energy_eV.requires_grad
    only_stress = concurrent.compute(binary, forces=False, stress=True)
    assert only_stress.forces_eV_per_A is None
    torch.testing.assert_close(only_stress.stress_eV_per_A3, ref.stress_eV_per_A3, rtol=0, atol=1e-14)
    # energies alone and graphs kept for parameter gradients stay in this thread
    lj.threads.clear()
    concurrent.compute(binary, forces=False)
    kept = concurrent.compute(binary, forces=True, create_graph=True)
    assert lj.threads == ["MainThread", "MainThread"]
    (grad,) = torch.autograd.grad(kept.forces_eV_per_A.square().sum(), [spline.values_eV])
    assert float(grad.abs().max()) > 0
    # a term's error reaches the caller
    broken = SumPotential([_ThreadRecorder(["Ar", "Kr"], 3.4, 0.01, CUTOFF_A, fail=True), spline], concurrent=True)
    with pytest.raises(RuntimeError, match="term failed"):
        broken.compute(binary, forces=True)


# ---------------------------------------------------------------- ASE calculator
def test_ase_calculator_matches_potential_and_ase_stress_convention():
    atoms = _argon_crystal(seed=8)
    lj = LennardJones(["Ar"], SIGMA_A, EPSILON_eV, CUTOFF_A)
    atoms.calc = ExprefineCalculator(lj)
    reference = atoms.copy()
    reference.calc = AseLennardJones(sigma=SIGMA_A, epsilon=EPSILON_eV, rc=CUTOFF_A, smooth=False)
    assert atoms.get_potential_energy() == pytest.approx(reference.get_potential_energy(), rel=1e-10)
    assert atoms.get_potential_energy(force_consistent=True) == pytest.approx(reference.get_potential_energy(), rel=1e-10)
    np.testing.assert_allclose(atoms.get_forces(), reference.get_forces(), atol=1e-10)
    np.testing.assert_allclose(atoms.get_stress(), reference.get_stress(), atol=1e-12)  # Voigt 6
    mol = molecule("H2O")
    mol.calc = ExprefineCalculator(PairSpline(["H", "O"], 4.0, 0.5, 6))
    assert mol.get_forces().shape == (3, 3)
    with pytest.raises(PropertyNotImplementedError):
        mol.get_stress()
    with pytest.raises(TypeError, match="Potential"):
        ExprefineCalculator(reference.calc)


def test_ase_calculator_conserves_energy_in_nve():
    atoms = _argon_crystal(seed=9)
    correction = PairSpline.from_function(["Ar"], lambda r: 0.002 * np.exp(-((r - 4.0) ** 2)), CUTOFF_A, R_MIN_A, 24)
    atoms.calc = ExprefineCalculator(SumPotential([LennardJones(["Ar"], SIGMA_A, EPSILON_eV, CUTOFF_A), correction]))
    rng = np.random.default_rng(0)
    masses = atoms.get_masses()[:, None]
    atoms.set_momenta(rng.normal(size=(len(atoms), 3)) * np.sqrt(masses * units.kB * 60.0))
    Stationary(atoms)
    dyn = VelocityVerlet(atoms, timestep=4.0 * units.fs)
    totals = []
    dyn.attach(lambda: totals.append(atoms.get_total_energy()), interval=1)
    dyn.run(25)
    kinetic = atoms.get_kinetic_energy()
    drift = np.ptp(totals)
    assert kinetic > 0.05 and drift < 1e-3 * kinetic, (drift, kinetic)


def test_load_model_file_names_the_file_and_the_kinds_it_reads(tmp_path):
    from exprefine.potentials import load_model_file

    bad = tmp_path / "model.xyz"
    bad.write_text("not a model")
    with pytest.raises(ValueError, match=r"model\.xyz: unknown model file kind \.xyz; exprefine reads \.model"):
        load_model_file(bad)
    with pytest.raises(FileNotFoundError, match="no model file"):
        load_model_file(tmp_path / "missing.model")
