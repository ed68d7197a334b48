"""tblite GFN1-xTB "label"/"truth" methods, the D3 helper and the resumable label cache."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tblite")

from ase.units import Bohr, Hartree, kB  # noqa: E402

from exprefine.reference import tblite_methods as tm  # noqa: E402
from exprefine.structures import carbon_defects, gcn_layer, gcn_stack  # noqa: E402


def _frames():
    """Two bulk AB frames (28 atoms) with the same atoms, so the second is warm-started."""
    a = gcn_stack(2, "AB", 3.2, corrugation_amplitude_A=0.05)
    b = a.copy()
    b.rattle(0.03, seed=7)
    return [a, b]


def _direct(atoms, method):
    """A cold tblite.interface.Calculator call, converted to eV, eV/Å, eV/Å³."""
    from tblite.interface import Calculator

    calc = Calculator(
        tm.tblite_method(method),
        atoms.numbers,
        atoms.positions / Bohr,
        lattice=np.asarray(atoms.cell) / Bohr,
        periodic=atoms.pbc,
    )
    calc.set("temperature", 300.0 * kB / Hartree)
    calc.set("verbosity", 0)
    res = calc.singlepoint()
    stress = (res.get("virial") * Hartree / atoms.get_volume()).flat[[0, 4, 8, 5, 2, 1]]
    return res.get("energy") * Hartree, -res.get("gradient") * Hartree / Bohr, stress


def test_label_table_has_no_dispersion():
    assert "dispersion" in tm.gfn1_parameter_table()
    assert "dispersion" not in tm.gfn1_parameter_table(dispersion=False)
    assert tm.gfn1_d3_parameters() == {"s6": 1.0, "s8": 2.4, "a1": 0.63, "a2": 5.0, "s9": 0.0}
    calc = tm.make_calculator("label")
    assert calc.parameters.electronic_temperature == 300.0
    with pytest.raises(ValueError, match="unknown method"):
        tm.make_calculator("pbe")


@pytest.mark.parametrize("method", tm.METHODS)
def test_labels_equal_direct_tblite_calls(tmp_path, method):
    frames = _frames()
    run = tm.label_frames(frames, method, tmp_path / f"{method}.extxyz")
    assert run.n_computed == 2 and run.n_cached == 0
    # frame 0 is a cold start, as is the direct call: the same numbers
    energy, forces, stress = _direct(frames[0], method)
    assert abs(run.frames[0].get_potential_energy() - energy) < 1e-7
    assert np.abs(run.frames[0].get_forces() - forces).max() < 1e-7
    assert np.abs(run.frames[0].get_stress() - stress).max() < 1e-9
    # frame 1 starts from frame 0's wavefunction: equal within the SCC convergence
    energy, forces, stress = _direct(frames[1], method)
    assert abs(run.frames[1].get_potential_energy() - energy) < 1e-5
    assert np.abs(run.frames[1].get_forces() - forces).max() < 5e-4
    assert np.abs(run.frames[1].get_stress() - stress).max() < 1e-5
    assert abs(energy - run.frames[0].get_potential_energy()) > 1e-2  # frames really differ


def test_forces_and_stress_match_finite_differences():
    atoms = gcn_stack(2, "AB", 3.2, corrugation_amplitude_A=0.1)
    atoms.rattle(0.05, seed=1)
    calc = tm.make_calculator("label", accuracy=0.1)
    atoms.calc = calc
    forces = atoms.get_forces()
    stress = atoms.get_stress()
    h = 1e-3

    def energy(a):
        a.calc = calc
        return a.get_potential_energy()

    for i, k in [(0, 0), (5, 2), (13, 1), (20, 0)]:
        plus, minus = atoms.copy(), atoms.copy()
        plus.positions[i, k] += h
        minus.positions[i, k] -= h
        fd = -(energy(plus) - energy(minus)) / (2 * h)
        assert abs(fd - forces[i, k]) < 5e-4 * max(1.0, abs(fd)), (i, k, fd, forces[i, k])
    for voigt, (p, q) in [(0, (0, 0)), (2, (2, 2)), (5, (0, 1))]:
        e = []
        for sign in (1.0, -1.0):
            strain = np.zeros((3, 3))
            strain[p, q] += sign * h / 2
            strain[q, p] += sign * h / 2
            b = atoms.copy()
            b.set_cell(np.asarray(atoms.cell) @ (np.eye(3) + strain), scale_atoms=True)
            e.append(energy(b))
        fd = (e[0] - e[1]) / (2 * h) / atoms.get_volume()
        assert abs(fd - stress[voigt]) < 1e-5, (voigt, fd, stress[voigt])


@pytest.mark.parametrize(
    "atoms",
    [gcn_layer(supercell=(2, 2)), gcn_stack(2, "AB", 3.2)],
    ids=["layer-2x2", "AB-bulk-1x1"],
)
def test_truth_minus_label_is_d3(atoms):
    pytest.importorskip("dftd3")
    results = {}
    for method in tm.METHODS:
        a = atoms.copy()
        a.calc = tm.make_calculator(method)
        results[method] = (a.get_potential_energy(), a.get_forces(), a.get_stress())
    d3 = tm.d3_dispersion(atoms)
    difference = results["truth"][0] - results["label"][0]
    assert difference < -0.4  # the two methods really differ
    assert abs(difference - d3.energy_eV) < 2e-3  # per cell
    assert np.abs(results["truth"][1] - results["label"][1] - d3.forces_eV_per_A).max() < 1e-3
    assert np.abs(results["truth"][2] - results["label"][2] - d3.stress_eV_per_A3).max() < 1e-4
    # the ASE calculator of the same term agrees with the helper
    b = atoms.copy()
    b.calc = tm.make_d3_calculator()
    assert abs(b.get_potential_energy() - d3.energy_eV) < 1e-6


def test_cache_resumes_without_recomputing(tmp_path, monkeypatch):
    path = tmp_path / "cache.extxyz"
    frames = _frames() + [carbon_defects(gcn_layer(), "central_N", n_defects=0)]
    frames[2].info["frame_id"] = "pristine-layer"
    first = tm.label_frames(frames[:2], "label", path)
    assert first.n_computed == 2

    # a kill in the middle of writing the third frame leaves a partial frame
    full = tm.label_frames(frames, "label", path)
    assert (full.n_computed, full.n_cached) == (1, 2)
    text = path.read_text()
    path.write_text(text[: len(text) - 100])

    calls = []
    original = tm.make_calculator

    def counting(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(tm, "make_calculator", counting)
    resumed = tm.label_frames(frames, "label", path)
    assert (resumed.n_computed, resumed.n_cached) == (1, 2)
    assert len(tm.read_label_cache(path)) == 3

    again = tm.label_frames(frames, "label", path)
    assert (again.n_computed, again.n_cached) == (0, 3)
    assert len(calls) == 1  # only the resumed run built a calculator
    for a, b in zip(full.frames, again.frames):
        assert abs(a.get_potential_energy() - b.get_potential_energy()) < 1e-5
        assert np.abs(a.get_forces() - b.get_forces()).max() < 1e-4
        assert np.array_equal(a.arrays["roles"], b.arrays["roles"])
    assert again.frames[2].info["frame_id"] == "pristine-layer"
    assert "defect" in again.frames[2].arrays

    with pytest.raises(ValueError, match="holds labels of method"):
        tm.label_frames(frames, "truth", path)
