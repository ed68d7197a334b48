"""The learnable pair dispersion term, closed-loop metrics against a reference potential,
rigid-layer binding curves, and pair tables for LAMMPS read back in ASE."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml
from ase import Atoms

from conftest import cn_correction_terms, cn_crystal, cn_dispersion
from exprefine.binding_curve import binding_curve, parabolic_minimum, separate_layers
from exprefine.closed_loop import compare_to_reference, recovered_fraction, reference_labels
from exprefine.config import ConfigError, parse_config
from exprefine.io.lammps_table import (
    TabulatedPairCalculator,
    lammps_overlay_lines,
    read_pair_table,
    tabulate_pairs,
    write_pair_table,
)
from exprefine.potentials import LennardJones, PairDispersion, SumPotential
from exprefine.state import from_atoms
from exprefine.testing import check_gradient_wrt_parameters, check_potential


# ------------------------------------------------------------------------------ dispersion
def test_dispersion_forces_stress_and_parameter_gradients_match_finite_differences():
    state = from_atoms([cn_crystal(0), cn_crystal(1)])
    report = check_potential(cn_dispersion(), state)
    assert report.stress_fd_error_eV_per_A3 is not None
    grads = check_gradient_wrt_parameters(cn_dispersion(), from_atoms(cn_crystal(2)))
    assert set(grads.max_error_by_parameter) == {"c6_eV_A6", "c8_eV_A8", "log_damping_radius"}


def test_dispersion_pair_function_is_the_damped_form_and_switches_off_smoothly():
    term = cn_dispersion(cutoff_A=7.0)
    r = torch.tensor([2.0, 3.5, 4.99, 6.0, 7.0, 7.5], dtype=torch.float64)
    table = term.table(r)[0].detach().numpy()  # C–C
    c6, c8, radius = 18.0, 300.0, 3.4
    bare = -(c6 / (r.numpy() ** 6 + radius ** 6) + c8 / (r.numpy() ** 8 + radius ** 8))
    np.testing.assert_allclose(table[:3], bare[:3], rtol=1e-12)  # below switch_on: the damped form itself
    x = (6.0 - 5.0) / 2.0
    np.testing.assert_allclose(table[3], bare[3] * (1 - 10 * x ** 3 + 15 * x ** 4 - 6 * x ** 5), rtol=1e-12)
    assert table[4] == 0.0 and table[5] == 0.0
    # energy and force continuous at the cutoff: the slope just inside vanishes like (r_c − r)²
    rr = torch.tensor([7.0 - 1e-3], dtype=torch.float64, requires_grad=True)
    e = term.pair_energy(rr, torch.zeros(1, dtype=torch.long))
    (slope,) = torch.autograd.grad(e.sum(), rr)
    assert abs(float(slope)) < 30 * 1e-6 * abs(bare[3])


def test_dispersion_at_zero_strength_is_zero_and_bad_groups_are_named():
    term = PairDispersion(["C", "N"], 8.0)
    assert float(term.energy(from_atoms(cn_crystal()))[0].detach()) == 0.0
    with pytest.raises(ValueError, match="c10"):
        PairDispersion(["C", "N"], 8.0, trainable=["c6", "c10"])
    with pytest.raises(ValueError, match="switch_on_A"):
        PairDispersion(["C", "N"], 8.0, switch_on_A=9.0)


def test_dispersion_scales_multiply_the_terms_and_old_files_load_with_scale_one():
    state = from_atoms(cn_crystal(4))
    base = cn_dispersion()
    only6 = cn_dispersion()
    only6.c8_eV_A8.data.zero_()
    scaled = PairDispersion(["C", "N"], 7.0, c6_eV_A6=[18.0, 15.0, 12.5], c8_eV_A8=[300.0, 250.0, 210.0],
                            damping_radius_A=[3.4, 3.3, 3.2], switch_on_A=5.0, s6=0.5, s8=2.0, trainable=["s6", "s8"])
    e6 = float(only6.energy(state)[0].detach())
    e8 = float(base.energy(state)[0].detach()) - e6
    energy = scaled.energy(state)
    assert abs(float(energy[0].detach()) - (0.5 * e6 + 2.0 * e8)) < 1e-12 * abs(e8)
    g6, g8 = torch.autograd.grad(energy.sum(), [scaled.s6, scaled.s8])  # linear: the unscaled parts
    assert abs(float(g6) - e6) < 1e-12 * abs(e6) and abs(float(g8) - e8) < 1e-12 * abs(e8)
    assert not scaled.c6_eV_A6.requires_grad and scaled.summary()["s8"] == 2.0
    # a state dict saved before the scales existed (C6, C8, R only) loads with s6 = s8 = 1
    old = {k: v for k, v in base.state_dict().items() if k not in ("s6", "s8")}
    scaled.load_state_dict(old)
    assert float(scaled.s6.detach()) == 1.0 and float(scaled.s8.detach()) == 1.0
    assert abs(float(scaled.energy(state)[0].detach()) - float(base.energy(state)[0].detach())) < 1e-12


def test_pair_dispersion_from_a_config():
    text = """
run_dir: runs/x
system: {lattice: {element: Ar, kind: fcc, number_density_per_A3: 0.02, repeat: [2, 2, 2]}}
potential:
  terms:
    - {kind: lennard_jones, species: [Ar], sigma_A: 3.4, epsilon_K: 120, cutoff_A: 8.0, trainable: false}
    - {kind: pair_dispersion, species: [Ar], cutoff_A: 10.0, c6_eV_A6: 5.0, trainable: [c6]}
sampling: {temperature_K: 85, timestep_fs: 5, equilibration_ps: 1, production_ps: 1, frame_interval_fs: 50}
"""
    from exprefine.builders import build_potential

    potential = build_potential(parse_config(yaml.safe_load(text)))
    term = potential.terms[1]
    assert isinstance(term, PairDispersion) and term.switch_on_A == 8.0
    assert term.c6_eV_A6.requires_grad and not term.c8_eV_A8.requires_grad
    assert not term.log_damping_radius.requires_grad
    with pytest.raises(ConfigError, match="switch_on_A"):
        parse_config(yaml.safe_load(text.replace("c6_eV_A6: 5.0", "c6_eV_A6: 5.0, switch_on_A: 12.0")))


# ----------------------------------------------------------------------------- closed loop
def _models():
    base = LennardJones(["C", "N"], 2.0, 0.01, cutoff_A=6.0, trainable=False)
    correction = cn_dispersion()
    return base, correction, SumPotential([base, correction])


def test_closed_loop_metric_is_zero_for_the_reference_and_the_correction_for_the_base():
    base, correction, reference = _models()
    frames = [cn_crystal(seed) for seed in range(3)]
    comparison = compare_to_reference({"base": base, "reference": reference}, reference, frames, name="crystal")
    assert comparison.n_frames == 3 and comparison.n_atoms_per_frame == 32
    ref = comparison.errors["reference"]
    assert ref.force_rmse_meV_per_A < 1e-9 and ref.energy_sd_meV_per_atom < 1e-9
    assert ref.stress_rmse_meV_per_A3 < 1e-9
    # the base misses exactly the correction: its RMS forces, stress and mean-removed energies
    out = correction.compute(from_atoms(frames), forces=True, stress=True)
    forces = out.forces_eV_per_A.detach().double()
    rms_force = float(forces.pow(2).mean().sqrt()) * 1000
    per_atom = out.energy_eV.detach().double() / 32 * 1000
    b = comparison.errors["base"]
    assert b.force_rmse_meV_per_A == pytest.approx(rms_force, rel=1e-10)
    assert b.energy_mean_meV_per_atom == pytest.approx(-float(per_atom.mean()), rel=1e-10)
    assert b.energy_sd_meV_per_atom == pytest.approx(float(per_atom.std(unbiased=False)), rel=1e-9)
    stress_rms = float(out.stress_eV_per_A3.detach().double().pow(2).mean().sqrt()) * 1000
    assert b.stress_rmse_meV_per_A3 == pytest.approx(stress_rms, rel=1e-9)
    assert recovered_fraction(b, ref) == pytest.approx(1.0)
    assert recovered_fraction(b, b) == 0.0
    rows = comparison.markdown_rows()
    assert rows[0][1] == "base" and rows[1][2] == "0.0"


def test_labelled_frames_are_reused_and_misuse_is_refused():
    base, _, reference = _models()
    labels = reference_labels(reference, [cn_crystal(4)])
    again = compare_to_reference({"reference": reference}, labels)
    assert again.errors["reference"].force_rmse_meV_per_A < 1e-9
    with pytest.raises(ValueError, match="frames"):
        compare_to_reference({"base": base}, labels, [cn_crystal(4)])
    with pytest.raises(ValueError, match="nothing to recover"):
        recovered_fraction(again.errors["reference"], again.errors["reference"])


# ---------------------------------------------------------------------------- binding curve
def _two_layer_stack(spacing_A: float = 3.0, skew: bool = True) -> tuple[Atoms, np.ndarray]:
    """One atom per layer, images in-plane 20 Å apart (> cutoff). Without skew the atoms sit on one
    line along c: E(d) per atom is φ(d) + φ(2d) (neighbours at ±d, own images at ±2d)."""
    offset, c_inplane = ([1.0, 0.5], [0.4, 0.2]) if skew else ([0.0, 0.0], [0.0, 0.0])
    atoms = Atoms("Ar2", positions=[[0, 0, 0.1], [*offset, spacing_A + 0.3]],
                  cell=[[20, 0, 0], [3.0, 20, 0], [*c_inplane, 2 * spacing_A]], pbc=True)
    return atoms, np.array([0, 1])


def test_separate_layers_moves_rigid_layers_along_the_normal():
    atoms, layer = _two_layer_stack()
    out = separate_layers(atoms, layer, 4.2)
    assert out.cell.array[2, 2] == pytest.approx(8.4)
    np.testing.assert_allclose(out.cell.array[2, :2], [0.4, 0.2])
    assert out.positions[1, 2] - out.positions[0, 2] == pytest.approx(4.2)
    np.testing.assert_allclose(out.positions[:, :2], atoms.positions[:, :2])
    with pytest.raises(ValueError, match="one index per atom"):
        separate_layers(atoms, [0], 3.0)
    with pytest.raises(ValueError, match="0 … n−1"):
        separate_layers(atoms, [0, 2], 3.0)


def test_binding_curve_of_lennard_jones_layers_has_the_closed_form_minimum():
    sigma, epsilon = 3.4, 0.0104
    lj = LennardJones(["Ar"], sigma, epsilon, cutoff_A=6.5, shift=False)
    atoms, layer = _two_layer_stack(skew=False)
    spacings = np.round(np.arange(3.55, 4.3, 0.01), 4)
    curve = binding_curve(lj, atoms, layer, spacings, far_spacing_A=15.0)
    r_min = 2 ** (1 / 6) * sigma  # 3.816 Å; 2d ≥ 7.1 Å is beyond the cutoff
    # the parabola through grid points h apart is exact to O(h²·φ'''/φ'') ≈ 1e-4 Å here
    assert curve.d_min_A == pytest.approx(r_min, abs=2e-4)
    assert curve.binding_energy_meV_per_atom == pytest.approx(epsilon * 1000, rel=1e-4)
    expected = 4 * epsilon * ((sigma / spacings) ** 12 - (sigma / spacings) ** 6) * 1000
    np.testing.assert_allclose(curve.energy_meV_per_atom, expected, rtol=1e-10)
    assert curve.as_dict()["far_spacing_A"] == 15.0


def test_parabolic_minimum_at_the_grid_edge_is_the_lowest_point():
    x = np.array([1.0, 2.0, 3.0])
    assert parabolic_minimum(x, np.array([0.0, 1.0, 2.0])) == (1.0, 0.0)
    assert parabolic_minimum(x, np.array([1.0, 0.0, 1.0])) == pytest.approx((2.0, 0.0))


# ------------------------------------------------------------------------------ pair tables
def test_pair_table_reproduces_the_terms_in_ase(tmp_path):
    terms = cn_correction_terms()
    tables = tabulate_pairs(terms, ["C", "N"], r_min_A=0.8, n_points=8000)
    assert [t.keyword for t in tables] == ["C_C", "C_N", "N_N"]
    path = write_pair_table(tmp_path / "correction.table", tables, comment="test")
    back = read_pair_table(path)
    np.testing.assert_allclose(back["C_N"].energy_eV, tables[1].energy_eV, rtol=1e-11, atol=1e-15)
    atoms = cn_crystal(3) * (1, 1, 2)
    atoms.calc = TabulatedPairCalculator(path)
    out = SumPotential(terms).compute(from_atoms(atoms), forces=True, stress=True)
    assert abs(atoms.get_potential_energy() - float(out.energy_eV[0])) < 1e-6
    np.testing.assert_allclose(atoms.get_forces(), out.forces_eV_per_A.detach().numpy(), atol=1e-6)
    voigt = out.stress_eV_per_A3[0].detach().numpy().flat[[0, 4, 8, 5, 2, 1]]
    np.testing.assert_allclose(atoms.get_stress(), voigt, atol=1e-8)


def test_pair_table_refuses_a_pair_inside_its_first_point(tmp_path):
    path = write_pair_table(tmp_path / "t.table", tabulate_pairs(cn_correction_terms(), ["C", "N"], r_min_A=3.0,
                                                                 n_points=500))
    atoms = cn_crystal(0)
    atoms.calc = TabulatedPairCalculator(path)
    with pytest.raises(ValueError, match="below the table's first point"):
        atoms.get_potential_energy()


def test_lammps_overlay_lines_add_the_table_to_the_model():
    tables = tabulate_pairs(cn_correction_terms(), ["C", "N"], n_points=100)
    text = lammps_overlay_lines("deepmd", "refined.pth", ["C", "N"], "correction.table", tables)
    lines = text.splitlines()
    assert lines[0] == "pair_style hybrid/overlay deepmd refined.pth table spline 100"
    assert lines[1] == "pair_coeff * * deepmd C N"
    assert lines[3] == "pair_coeff 1 2 table correction.table C_N 8"
    mace = lammps_overlay_lines("mace", "m-lammps.pt", ["C", "N"], "c.table", tables).splitlines()
    assert mace[1] == "pair_coeff * * mace m-lammps.pt C N"
    with pytest.raises(ValueError, match="model_style"):
        lammps_overlay_lines("nequip", "x", ["C"], "c.table", tables)


def test_a_refinement_writes_its_learned_pair_terms_as_a_lammps_table(tmp_path):
    from exprefine.builders import build_potential, save_native_models

    text = f"""
run_dir: {tmp_path / 'run'}
system: {{lattice: {{element: C, kind: fcc, number_density_per_A3: 0.04, repeat: [2, 2, 2]}}}}
potential:
  terms:
    - {{kind: lennard_jones, species: [C, N], sigma_A: 2.0, epsilon_eV: 0.01, cutoff_A: 6.0, trainable: false}}
    - {{kind: pair_spline, species: [C, N], r_min_A: 3.0, cutoff_A: 8.0, n_knots: 11}}
    - {{kind: pair_dispersion, species: [C, N], cutoff_A: 7.0, switch_on_A: 5.0, c6_eV_A6: [18, 15, 12.5]}}
sampling: {{temperature_K: 300, timestep_fs: 1, equilibration_ps: 1, production_ps: 1, frame_interval_fs: 50}}
"""
    potential = build_potential(parse_config(yaml.safe_load(text)))
    with torch.no_grad():
        potential.terms[1].values_eV.copy_(torch.linspace(-4e-3, 2e-3, 30).reshape(3, 10))
    written = save_native_models(parse_config(yaml.safe_load(text)), potential)
    assert [p.name for p in written] == ["refined_pairs.table", "refined_pairs.lammps"]
    lines = written[1].read_text().splitlines()
    assert lines[0].startswith("# LAMMPS atom types: 1=C 2=N")
    assert lines[1] == "pair_style table spline 10000"  # no model term: the table alone
    atoms = cn_crystal(2)
    atoms.calc = TabulatedPairCalculator(written[0])
    correction = SumPotential([potential.terms[1], potential.terms[2]])
    assert abs(atoms.get_potential_energy() - float(correction.energy(from_atoms(atoms))[0].detach())) < 1e-6
