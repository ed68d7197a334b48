"""The D3(BJ) Potential: the dftd3 package's numbers through exprefine's autograd contract."""

import numpy as np
import pytest
import torch

pytest.importorskip("dftd3")
pytest.importorskip("tblite")

from exprefine.potentials import D3Dispersion, SumPotential  # noqa: E402
from exprefine.reference import d3_dispersion, gfn1_d3  # noqa: E402
from exprefine.state import concatenate, from_atoms  # noqa: E402
from exprefine.structures import gcn_stack  # noqa: E402


def _frames():
    rng = np.random.default_rng(3)
    out = []
    for d in (3.2, 3.6):
        atoms = gcn_stack(2, "AB", d, supercell=(1, 1))
        atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
        out.append(atoms)
    return out


def test_batch_matches_the_dftd3_package_per_frame():
    frames = _frames()
    term = D3Dispersion(gfn1_d3())
    state = concatenate([from_atoms(a) for a in frames])
    out = term.compute(state, forces=True, stress=True)
    offset = 0
    for s, atoms in enumerate(frames):
        ref = d3_dispersion(atoms)
        n = len(atoms)
        assert abs(float(out.energy_eV[s]) - ref.energy_eV) < 1e-9
        np.testing.assert_allclose(out.forces_eV_per_A[offset:offset + n].numpy(), ref.forces_eV_per_A, atol=1e-9)
        stress = out.stress_eV_per_A3[s].numpy()
        voigt = stress.flat[[0, 4, 8, 5, 2, 1]]
        np.testing.assert_allclose(voigt, ref.stress_eV_per_A3, atol=1e-10)
        offset += n


def test_cell_gradient_equals_finite_differences():
    # The cell gradient is rebuilt from the library's virial, and that virial differs from the
    # strain derivative of the library's own energy by up to 0.4 % (measured with dftd3 1.7 on
    # this frame, any cutoff from 50 to 150 bohr). The bound is 1 % of the largest component.
    atoms = _frames()[0]
    term = D3Dispersion(gfn1_d3())
    state = from_atoms(atoms)
    cell = state.cell.clone().requires_grad_(True)
    from dataclasses import replace

    energy = term.energy(replace(state, cell=cell))
    (grad,) = torch.autograd.grad(energy.sum(), [cell])
    h = 1e-4
    bound = 0.01 * float(grad.abs().max())
    for i, j in [(0, 0), (1, 0), (2, 2), (0, 2)]:
        plus, minus = state.cell.clone(), state.cell.clone()
        plus[0, i, j] += h
        minus[0, i, j] -= h
        fd = (float(term.energy(replace(state, cell=plus))[0]) - float(term.energy(replace(state, cell=minus))[0])) / (2 * h)
        assert abs(fd - float(grad[0, i, j])) < bound


def test_in_a_sum_it_adds_d3_forces_and_keeps_parameter_gradients():
    from exprefine.potentials import LennardJones

    atoms = _frames()[1]
    lj = LennardJones(["C", "N"], 3.3, 0.003, 8.0)
    total = SumPotential([lj, D3Dispersion(gfn1_d3())])
    state = from_atoms(atoms)
    both = total.compute(state, forces=True, create_graph=True)
    alone = lj.compute(state, forces=True)
    ref = d3_dispersion(atoms)
    np.testing.assert_allclose((both.forces_eV_per_A - alone.forces_eV_per_A).detach().numpy(),
                               ref.forces_eV_per_A, atol=1e-9)
    params = [p for p in total.parameters() if p.requires_grad]
    grads = torch.autograd.grad((both.forces_eV_per_A ** 2).sum(), params)
    assert any(float(g.abs().sum()) > 0 for g in grads)


def test_adding_d3_to_labels_equals_labelling_with_the_sum():
    from exprefine.data import add_term_to_labels, label_with_potential
    from exprefine.potentials import LennardJones

    frames = _frames()
    lj = LennardJones(["C", "N"], 3.3, 0.003, 6.0)
    d3 = D3Dispersion(gfn1_d3())
    shifted = add_term_to_labels(label_with_potential(lj, frames), d3)
    direct = label_with_potential(SumPotential([lj, d3]), frames)
    for name in ("energies_eV", "forces_eV_per_A", "stress_eV_per_A3"):
        np.testing.assert_allclose(getattr(shifted, name).numpy(), getattr(direct, name).numpy(), atol=1e-10)
    assert bool(shifted.has_stress.all())


def test_trainable_scales_give_the_energy_derivatives_reweighting_needs():
    from dataclasses import replace as dc_replace

    from exprefine.config import D3Config

    frames = _frames()
    state = concatenate([from_atoms(a) for a in frames])
    config = D3Config(kind="dftd3", s6=0.7, s8=1.3, a1=0.4289, a2_bohr=4.4407, trainable=["s6", "s8"])
    term = config.build(torch.float64)
    # energy of fixed frames (the reweighting path): s6·E6 + s8·E8, differentiable in the scales
    energy = term.energy(state)
    g6, g8 = torch.autograd.grad(energy.sum(), [term.s6, term.s8])
    only6 = D3Dispersion(dc_replace(term.settings, s6=1.0, s8=0.0)).energy(state).detach()
    only8 = D3Dispersion(dc_replace(term.settings, s6=0.0, s8=1.0)).energy(state).detach()
    np.testing.assert_allclose(energy.detach().numpy(), (0.7 * only6 + 1.3 * only8).numpy(), rtol=1e-12)
    with torch.no_grad():  # energies without derivatives (what reweighting evaluates): the same values
        np.testing.assert_allclose(term.energy(state).numpy(), energy.detach().numpy(), rtol=1e-12)
    assert abs(float(g6) - float(only6.sum())) < 1e-12 * abs(float(only6.sum()))
    assert abs(float(g8) - float(only8.sum())) < 1e-12 * abs(float(only8.sum()))
    # forces (the MD path) use the current scales: equal to the package with those s6, s8
    out = term.compute(state)
    ref = D3Dispersion(dc_replace(term.settings, s6=0.7, s8=1.3)).compute(state)
    torch.testing.assert_close(out.forces_eV_per_A, ref.forces_eV_per_A, rtol=1e-12, atol=1e-12)
    assert term.summary() == {"s6": 0.7, "s8": 1.3}
    with pytest.raises(NotImplementedError, match="s6/s8"):
        term.compute(state, stress=True, create_graph=True)


def test_pair_coefficients_of_a_gcn_cell_follow_d3s_own_pair_energies():
    from exprefine.potentials.dftd3 import d3_pair_coefficients

    atoms = gcn_stack(2, "AB", 3.3, supercell=(1, 1))
    coeff = d3_pair_coefficients(atoms.numbers, atoms.positions, ["C", "N"], a1=0.4289, a2_bohr=4.4407)
    assert coeff.species == ("C", "N")
    # C6 of sp² carbon, nitrogen in between: D3's free-atom order C > N and the geometric-mean rule within 5 %
    cc, cn, nn = coeff.c6_eV_A6
    assert cc > cn > nn > 0
    assert abs(cn - (cc * nn) ** 0.5) < 0.05 * cn
    # C8 = 3·C6·√(Q_a Q_b): the ratio C8/C6 is geometric-mean too, exactly
    ratios = [c8 / c6 for c6, c8 in zip(coeff.c6_eV_A6, coeff.c8_eV_A8)]
    assert abs(ratios[1] - (ratios[0] * ratios[2]) ** 0.5) < 1e-3 * ratios[1]
    with pytest.raises(ValueError, match="no C-C pair"):
        d3_pair_coefficients([7, 7], [[0, 0, 0], [0, 0, 1.1]], ["C", "N"], 0.4289, 4.4407)


def test_refined_scales_written_out_run_in_the_packages_ase_calculator(tmp_path):
    from exprefine.config import D3Config
    from exprefine.potentials.dftd3 import d3_ase_calculator, load_d3_parameters

    config = D3Config(kind="dftd3", s6=0.0, s8=0.0, a1=0.4289, a2_bohr=4.4407, trainable=["s6", "s8"])
    term = config.build(torch.float64)
    with torch.no_grad():  # as a refinement would leave them
        term.s6.fill_(0.83)
        term.s8.fill_(1.9)
    (path,) = config.save_native(term, tmp_path, 0, 1)
    assert path.name == "refined_d3bj.json"
    loaded = load_d3_parameters(path)
    assert (loaded.s6, loaded.s8, loaded.a1, loaded.a2) == (0.83, 1.9, 0.4289, 4.4407)
    atoms = _frames()[1]
    atoms.calc = d3_ase_calculator(loaded)
    out = term.compute(from_atoms(atoms))
    # the calculator converts with ase.units (CODATA 2014), exprefine with CODATA 2018: 1e-8 relative apart
    energy = float(out.energy_eV[0])
    assert abs(atoms.get_potential_energy() - energy) < 1e-7 * abs(energy)
    np.testing.assert_allclose(atoms.get_forces(), out.forces_eV_per_A.detach().numpy(), rtol=1e-7, atol=1e-9)


def test_trainable_damping_gives_energy_derivatives_of_the_library():
    from dataclasses import replace as dc_replace

    from exprefine.config import D3Config

    frames = _frames()
    state = concatenate([from_atoms(a) for a in frames])
    config = D3Config(kind="dftd3", s6=0.95, s8=0.4, a1=0.4289, a2_bohr=4.4407, trainable=["s8", "a1", "a2"])
    term = config.build(torch.float64)
    energy = term.energy(state)
    g8, g1, g2 = torch.autograd.grad(energy.sum(), [term.s8, term.a1, term.a2])

    def total(**changes) -> float:
        return float(D3Dispersion(dc_replace(term.settings, **changes)).energy(state).sum())

    # independent central differences at two steps, Richardson-extrapolated: the term's derivative must
    # lie closer to the extrapolation than the coarse estimate does (its truncation error bounds the test)
    for g, name, value, h in ((g1, "a1", 0.4289, 0.02), (g2, "a2", 4.4407, 0.2)):
        coarse = (total(**{name: value + h}) - total(**{name: value - h})) / (2 * h)
        fine = (total(**{name: value + h / 2}) - total(**{name: value - h / 2})) / h
        extrapolated = (4 * fine - coarse) / 3
        assert abs(float(g) - extrapolated) < abs(fine - coarse)
        assert float(g) > 0  # stronger damping, weaker (less negative) dispersion
    assert abs(float(g8) - total(s6=0.0, s8=1.0)) < 1e-12 * abs(float(g8))
    assert abs(float(energy.detach().sum()) - total()) < 1e-12 * abs(total())
    # moved parameters are used everywhere: energies, forces, the written file, the summary
    with torch.no_grad():
        term.a1.fill_(0.63)
        term.a2.fill_(5.0)
    moved = D3Dispersion(dc_replace(term.settings, a1=0.63, a2=5.0))
    torch.testing.assert_close(term.compute(state).forces_eV_per_A, moved.compute(state).forces_eV_per_A,
                               rtol=1e-12, atol=1e-12)
    assert term.summary() == {"s6": 0.95, "s8": 0.4, "a1": 0.63, "a2_bohr": 5.0}
    with torch.no_grad():
        np.testing.assert_allclose(term.energy(state).numpy(), moved.energy(state).numpy(), rtol=1e-12)


def test_fixed_damping_keeps_the_two_scale_checkpoint_layout(tmp_path):
    from exprefine.config import D3Config
    from exprefine.potentials.dftd3 import load_d3_parameters

    fixed = D3Config(kind="dftd3", s6=1.0, s8=0.7875, a1=0.4289, a2_bohr=4.4407, trainable=["s6", "s8"])
    assert sorted(fixed.build(torch.float64).state_dict()) == ["s6", "s8"]  # earlier runs' checkpoints load
    config = D3Config(kind="dftd3", s6=1.0, s8=0.7875, a1=0.4289, a2_bohr=4.4407, trainable=["a2"])
    term = config.build(torch.float64)
    assert sorted(term.state_dict()) == ["a2", "s6", "s8"]
    with torch.no_grad():
        term.a2.fill_(4.9)
    (path,) = config.save_native(term, tmp_path, 0, 1)
    loaded = load_d3_parameters(path)
    assert (loaded.s6, loaded.s8, loaded.a1, loaded.a2) == (1.0, 0.7875, 0.4289, 4.9)
    with pytest.raises(NotImplementedError, match="a2"):
        term.compute(from_atoms(_frames()[0]), stress=True, create_graph=True)


def test_a_prior_on_damping_that_does_not_train_says_to_make_it_trainable():
    from types import SimpleNamespace

    from exprefine.builders import term_priors
    from exprefine.config import ConfigError, D3Config, PotentialConfig, PriorConfig

    config = D3Config(kind="dftd3", s6=1.0, s8=0.7875, a1=0.4289, a2_bohr=4.4407, trainable=["s6"],
                      prior={"a1": PriorConfig(mean=0.43, sigma=0.2)})
    cfg = SimpleNamespace(potential=PotentialConfig(terms=[config]))
    with pytest.raises(ConfigError, match=r"prior.a1: 'a1' does not train .*add it to the term's trainable"):
        term_priors(cfg, config.build(torch.float64))
    config.prior = {"a3": PriorConfig(mean=0.43, sigma=0.2)}
    with pytest.raises(ConfigError, match="no parameter 'a3'; its parameters: s6, s8"):
        term_priors(cfg, config.build(torch.float64))
    config.prior = {"s8": PriorConfig(mean=0.7875, sigma=0.2)}
    with pytest.raises(ConfigError, match="s8: the parameter is not trainable"):
        term_priors(cfg, config.build(torch.float64))


def test_periodic_surroundings_copy_the_atoms_of_a_shell_around_the_cell():
    from exprefine.potentials.dftd3 import periodic_surroundings

    cell = np.diag([2.0, 2.0, 4.0])
    atom, images = periodic_surroundings(np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 2.0]]), cell, 1.0)
    # margin 1 Å: fractional [-0.5, 1.5) along x, y and [-0.25, 1.25) along z
    frac = images @ np.linalg.inv(cell)
    assert np.all((frac >= [-0.5, -0.5, -0.25]) & (frac < [1.5, 1.5, 1.25]))
    # the corner atom (0, 0, 0): shifts {0, 1}³ less itself; the centre (½, ½, ½): {−1, 0}² × {0} less itself
    assert np.bincount(atom).tolist() == [7, 3]
    assert not np.any(np.all(np.isclose(images[:, None, :], [[0, 0, 0], [1, 1, 2]]), axis=-1))


def test_periodic_pair_coefficients_are_those_of_the_solid_whatever_the_supercell():
    from ase.build import bulk

    from exprefine.potentials.dftd3 import d3_pair_coefficients

    cubic = bulk("SiC", "zincblende", a=4.36, cubic=True)
    small, large = cubic, cubic * (2, 2, 2)
    periodic = [d3_pair_coefficients(x.numbers, x.positions, ["Si", "C"], 0.4289, 4.4407, cell_A=x.cell.array)
                for x in (small, large)]
    # every Si and every C alike in the solid: one C6 per pair type, the same from either cell
    for c in periodic:
        assert max(c.c6_sd_eV_A6) < 1e-3 * min(c.c6_eV_A6)
    np.testing.assert_allclose(periodic[0].c6_eV_A6, periodic[1].c6_eV_A6, rtol=1e-5)
    np.testing.assert_allclose(periodic[0].c8_eV_A8, periodic[1].c8_eV_A8, rtol=1e-5)
    # as clusters, the surface atoms count fewer neighbours: larger C6, spread over the atoms
    cluster = d3_pair_coefficients(small.numbers, small.positions, ["Si", "C"], 0.4289, 4.4407)
    assert all(a > 1.1 * b for a, b in zip(cluster.c6_eV_A6, periodic[0].c6_eV_A6))
    assert min(cluster.c6_sd_eV_A6) > 0.01 * max(cluster.c6_eV_A6)


def test_d3_at_frozen_coordination_numbers_keeps_the_energy_and_a_table_reproduces_it(tmp_path):
    import yaml

    from exprefine.builders import build_potential, save_native_models
    from exprefine.config import parse_config
    from exprefine.io.lammps_table import read_pair_table
    from exprefine.potentials.dftd3 import D3Parameters, d3_pair_dispersion

    atoms = gcn_stack(2, "AB", 3.25, supercell=(2, 2))
    atoms.rattle(0.02, seed=4)
    parameters = D3Parameters(s6=1.0, s8=0.7875, a1=0.4289, a2=4.4407)
    pair, coefficients = d3_pair_dispersion(parameters, atoms.numbers, atoms.positions, ["C", "N"], atoms.cell.array)
    state = from_atoms(atoms)
    e_full = float(D3Dispersion(parameters).energy(state)[0])
    e_pair = float(pair.energy(state)[0].detach())
    # the pair term misses only how C6 varies between sites of one species pair
    spread = max(sd / c6 for sd, c6 in zip(coefficients.c6_sd_eV_A6, coefficients.c6_eV_A6))
    assert 0 < spread < 0.1 and abs(e_pair - e_full) < spread * abs(e_full)
    # a run with a D3 term writes that pair term as a LAMMPS table next to the model
    atoms.write(tmp_path / "cell.extxyz")
    config = parse_config(yaml.safe_load(f"""
run_dir: {tmp_path}
system: {{structure_file: {tmp_path / 'cell.extxyz'}}}
potential:
  terms:
  - {{kind: dftd3, s6: 1.0, s8: 0.7875, a1: 0.4289, a2_bohr: 4.4407, trainable: [s6, s8]}}
sampling: {{temperature_K: 300, timestep_fs: 1, equilibration_ps: 0.01, production_ps: 0.01, frame_interval_fs: 5}}
targets: []
"""))
    potential = build_potential(config)
    written = {path.name for path in save_native_models(config, potential)}
    assert {"refined_d3bj.json", "refined_d3bj_pairs.table", "refined_d3bj_pairs.lammps"} <= written
    lines = (tmp_path / "refined_d3bj_pairs.lammps").read_text()
    assert "meV/Å RMS" in lines and "pair_coeff 1 2 refined_d3bj_pairs.table C_N" in lines  # no model: the table alone
    table = read_pair_table(tmp_path / "refined_d3bj_pairs.table")["C_N"]
    r = torch.tensor(table.r_A[100:9000:500], dtype=torch.float64)
    expected = pair.pair_energy(r, torch.full(r.shape, 1, dtype=torch.long)).detach().numpy()
    np.testing.assert_allclose(table.energy_eV[100:9000:500], expected, rtol=1e-9, atol=1e-12)


def test_a_short_range_spline_fitted_to_the_missed_forces_brings_the_pair_terms_close_to_d3(tmp_path):
    from exprefine.d3_table import d3_pair_approximation, write_d3_pair_table
    from exprefine.io.lammps_table import read_pair_table
    from exprefine.potentials.dftd3 import D3Parameters

    parameters = D3Parameters(s6=1.0, s8=0.7875, a1=0.4289, a2=4.4407)
    structure = gcn_stack(2, "AB", 3.25, supercell=(1, 1))
    frames = []
    for seed in range(6):  # thermal-like distortions of the same cell
        atoms = structure.copy()
        atoms.rattle(0.06, seed=10 + seed)
        frames.append(from_atoms(atoms))
    frozen = d3_pair_approximation(parameters, from_atoms(structure), ["C", "N"])
    fitted = d3_pair_approximation(parameters, from_atoms(structure), ["C", "N"], frames)
    assert frozen.spline is None and (frozen.n_fit_frames, frozen.n_check_frames) == (0, 0)
    assert (fitted.n_fit_frames, fitted.n_check_frames) == (3, 3)
    # on held-out frames, the frozen coordination numbers miss most of D3's force; the spline recovers most of that
    assert fitted.force_rms_frozen_vs_full_meV_per_A > 0.5 * fitted.force_rms_full_meV_per_A
    assert fitted.force_rms_table_vs_full_meV_per_A < 0.3 * fitted.force_rms_frozen_vs_full_meV_per_A
    spline = fitted.spline
    assert spline is not None and not any(p.requires_grad for p in spline.parameters())
    r = torch.tensor([3.0, 3.5, 6.0], dtype=torch.float64)
    assert float(spline.pair_energy(r, torch.ones(3, dtype=torch.long)).abs().max()) == 0.0  # nothing past 3 Å
    path, _ = write_d3_pair_table(fitted, tmp_path / "d3.table", ["C", "N"], "test")
    assert "meV/Å RMS on 3 MD frames not fitted" in path.read_text().splitlines()[0]
    assert set(read_pair_table(path)) == {"C_C", "C_N", "N_N"}
