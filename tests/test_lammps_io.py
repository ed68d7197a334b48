"""LAMMPS text dumps and ASE trajectories read as exprefine Trajectories.

The dumps are written by hand here, in LAMMPS's own layout for a restricted triclinic box
(bounding-box bounds plus tilts), with atoms in shuffled id order.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.io import read, write

from conftest import argon_lattice, argon_lj
from exprefine.io import has_reference_energies, read_frames, read_lammps_dump, read_lammps_dump_frames
from exprefine.io.frames import with_reference_energies
from exprefine.reweighting import frame_energies
from exprefine.trajectory import parameter_fingerprint

CELL = np.array([[10.0, 0.0, 0.0], [2.5, 9.0, 0.0], [-1.5, 1.2, 8.0]])  # rows a, b, c: xy=2.5, xz=-1.5, yz=1.2
ORIGIN = np.array([0.5, -1.0, 2.0])
TYPES = np.array([1, 2, 1, 1, 2, 2, 1])  # type of atom id 1..7
ELEMENTS = {1: "C", 2: "N"}


def source_frames(n_frames: int = 2):
    """Fractional coordinates of 7 atoms (ids 1..7) in each frame; a slightly different cell per frame."""
    rng = np.random.default_rng(0)
    fractions = [rng.uniform(size=(7, 3)) for _ in range(n_frames)]
    cells = [CELL * (1.0 + 0.01 * k) for k in range(n_frames)]
    return fractions, cells


def bounds_lines(cell: np.ndarray, origin: np.ndarray) -> list[str]:
    """LAMMPS's 'ITEM: BOX BOUNDS xy xz yz' lines: bounding box of the tilted cell, then the tilt."""
    lx, ly, lz = cell[0, 0], cell[1, 1], cell[2, 2]
    xy, xz, yz = cell[1, 0], cell[2, 0], cell[2, 1]
    xlo, ylo, zlo = origin
    xhi, yhi, zhi = xlo + lx, ylo + ly, zlo + lz
    xlo_b = xlo + min(0.0, xy, xz, xy + xz)
    xhi_b = xhi + max(0.0, xy, xz, xy + xz)
    ylo_b = ylo + min(0.0, yz)
    yhi_b = yhi + max(0.0, yz)
    return [f"{xlo_b:.10f} {xhi_b:.10f} {xy:.10f}", f"{ylo_b:.10f} {yhi_b:.10f} {xz:.10f}",
            f"{zlo:.10f} {zhi:.10f} {yz:.10f}"]


def write_dump(path, columns: str, fractions, cells, timesteps=(100, 200), drop_column: str | None = None) -> None:
    """A dump with ``columns`` ('xs', 'x' or 'xu' style) and atoms in a shuffled id order."""
    rng = np.random.default_rng(1)
    names = {"xs": ["xs", "ys", "zs"], "x": ["x", "y", "z"], "xu": ["xu", "yu", "zu"]}[columns]
    header = ["id", "type", *names, "fx", "fy", "fz"]
    if drop_column:
        header.remove(drop_column)
    lines = []
    for step, frac, cell in zip(timesteps, fractions, cells):
        cart = ORIGIN + frac @ cell
        if columns == "xu":
            cart = cart + np.array([1, -2, 0]) @ cell  # unwrapped: some atoms one or two cells away
        values = frac if columns == "xs" else cart
        lines += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", "7",
                  "ITEM: BOX BOUNDS xy xz yz pp pp pp", *bounds_lines(cell, ORIGIN), "ITEM: ATOMS " + " ".join(header)]
        for i in rng.permutation(7):
            row = {"id": str(i + 1), "type": str(TYPES[i]), "fx": "0.1", "fy": "-0.2", "fz": f"{0.01 * i:.3f}"}
            row.update({name: f"{values[i, k]:.12f}" for k, name in enumerate(names)})
            lines.append(" ".join(row[c] for c in header))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("columns", ["xs", "x", "xu"])
def test_triclinic_dump_positions_and_cells(tmp_path, columns):
    fractions, cells = source_frames()
    path = tmp_path / f"{columns}.dump"
    write_dump(path, columns, fractions, cells)

    traj = read_lammps_dump(path, ELEMENTS, temperature_K=300.0, timestep_fs=0.5)
    assert traj.n_frames == 2 and traj.n_atoms == 7
    assert traj.atomic_numbers.tolist() == [6 if t == 1 else 7 for t in TYPES]
    for k in range(2):
        expected = ORIGIN + fractions[k] @ cells[k]
        if columns == "xu":
            expected = expected + np.array([1, -2, 0]) @ cells[k]
        np.testing.assert_allclose(traj.cells_A[k].numpy(), cells[k], rtol=0, atol=1e-6)
        np.testing.assert_allclose(traj.positions_A[k].numpy(), expected, rtol=0, atol=1e-6)
    assert traj.pbc.tolist() == [True, True, True]
    assert traj.time_fs.tolist() == [50.0, 100.0]
    assert traj.masses_amu[0] == pytest.approx(12.011) and traj.masses_amu[1] == pytest.approx(14.007)
    # frames from elsewhere: no U_ref, flagged as such
    assert not has_reference_energies(traj) and torch.all(traj.energies_eV == 0)
    assert traj.fingerprint == f"external:lammps-dump:{columns}.dump"

    frames = read_lammps_dump_frames(path, ["C", "N"])
    assert frames.ids.tolist() == list(range(1, 8)) and frames.timesteps.tolist() == [100, 200]
    np.testing.assert_allclose(frames.forces_eV_per_A[0, :, 2], 0.01 * np.arange(7), atol=1e-12)
    np.testing.assert_allclose(frames.origins_A[0], ORIGIN, atol=1e-9)


def test_a_restarted_run_keeps_each_timestep_once_in_its_last_copy(tmp_path):
    from exprefine.io.lammps import continued_frames

    # steps 100..400 dumped, the run restarted from step 200: 300 and 400 again (the later copies differ)
    fractions, cells = source_frames(6)
    path = tmp_path / "restarted.dump"
    write_dump(path, "x", fractions, cells, timesteps=(100, 200, 300, 400, 300, 400))
    frames = read_lammps_dump_frames(path, ELEMENTS)
    assert frames.timesteps.tolist() == [100, 200, 300, 400]
    for kept, written in zip(range(4), (0, 1, 4, 5)):
        np.testing.assert_allclose(frames.positions_A[kept], ORIGIN + fractions[written] @ cells[written], atol=1e-6)
    assert frames.forces_eV_per_A is not None and frames.forces_eV_per_A.shape[0] == 4
    assert continued_frames([0, 10, 20, 10, 20, 30, 20]).tolist() == [0, 3, 6]  # two restarts


def test_cells_agree_with_ase_reader(tmp_path):
    fractions, cells = source_frames()
    path = tmp_path / "ase.dump"
    write_dump(path, "x", fractions, cells)
    ours = read_lammps_dump(path, ELEMENTS)
    theirs = read(str(path), format="lammps-dump-text", index=":", specorder=["C", "N"])
    for k, atoms in enumerate(theirs):
        np.testing.assert_allclose(ours.cells_A[k].numpy(), atoms.cell.array, atol=1e-9)
        assert atoms.get_chemical_symbols() == ["C" if t == 1 else "N" for t in TYPES]


def test_missing_column_names_file_timestep_and_column(tmp_path):
    fractions, cells = source_frames()
    path = tmp_path / "no_type.dump"
    write_dump(path, "xs", fractions, cells, drop_column="type")
    with pytest.raises(ValueError) as err:
        read_lammps_dump(path, ELEMENTS)
    message = str(err.value)
    assert str(path) in message and "timestep 100" in message and "'type'" in message and "\n" not in message

    path = tmp_path / "no_z.dump"
    write_dump(path, "x", fractions, cells, drop_column="z")
    with pytest.raises(ValueError, match=r"timestep 100: missing position columns"):
        read_lammps_dump(path, ELEMENTS)

    path = tmp_path / "plain.dump"
    write_dump(path, "xs", fractions, cells)
    with pytest.raises(ValueError, match=r"timestep 100: atom type 2 has no element"):
        read_lammps_dump(path, {1: "C"})


def test_extra_per_atom_columns_elements_and_the_preferred_coordinates(tmp_path):
    """Columns of computes and variables come along in id order; x y z win over xu yu zu; an element column names the atoms."""
    rows = {3: "N 3 1.0 2.0 3.0 11.0 2.0 3.0 -0.3 7", 1: "C 1 0.5 0.5 0.5 0.5 10.5 0.5 -0.1 5",
            2: "C 2 4.0 4.0 4.0 4.0 4.0 14.0 -0.2 6"}
    lines = []
    for step, order in ((0, [3, 1, 2]), (10, [2, 3, 1])):
        lines += ["ITEM: TIMESTEP", str(step), "ITEM: NUMBER OF ATOMS", "3", "ITEM: BOX BOUNDS pp pp pp",
                  "0 10", "0 10", "0 10", "ITEM: ATOMS element id x y z xu yu zu c_pe i_tag"]
        lines += [rows[i] for i in order]
    path = tmp_path / "extra.dump"
    path.write_text("\n".join(lines) + "\n")
    frames = read_lammps_dump_frames(path)
    assert frames.coordinates == "x" and frames.atomic_numbers.tolist() == [6, 6, 7]
    np.testing.assert_allclose(frames.positions_A[1, :, 0], [0.5, 4.0, 1.0])
    np.testing.assert_allclose(frames.per_atom["c_pe"], [[-0.1, -0.2, -0.3]] * 2)
    assert frames.per_atom["i_tag"].tolist() == [[5, 6, 7]] * 2 and frames.forces_eV_per_A is None
    path.write_text("\n".join(lines[:-1]) + "\n")  # the second frame is cut short
    with pytest.raises(ValueError, match=r"extra.dump: timestep 10: 2 atoms, the first frame has 3") as err:
        read_lammps_dump_frames(path)
    assert "\n" not in str(err.value)
    path.write_text("\n".join(lines).replace("4.0 4.0 4.0 4.0 4.0 14.0", "4.0 4.0 4.0 4.0 abc 14.0") + "\n")
    with pytest.raises(ValueError, match=r"extra.dump: timestep 0: could not convert string 'abc'"):
        read_lammps_dump_frames(path)  # ASE's own message, one line


def test_ase_frames_and_reference_energies(tmp_path):
    lj = argon_lj()
    atoms = argon_lattice(2)
    frames = []
    for k in range(3):
        a = atoms.copy()
        a.positions += np.random.default_rng(k).normal(scale=0.1, size=a.positions.shape)
        frames.append(a)
    path = tmp_path / "frames.extxyz"
    write(str(path), frames, format="extxyz")

    traj = read_frames(path, frame_interval_fs=10.0)
    np.testing.assert_allclose(traj.positions_A.numpy(), np.stack([a.positions for a in frames]), atol=1e-7)
    assert not has_reference_energies(traj) and traj.kT_eV == 0.0 and traj.time_fs.tolist() == [0.0, 10.0, 20.0]
    with pytest.raises(ValueError, match="temperature"):
        with_reference_energies(traj, lj)
    ready = with_reference_energies(traj, lj, temperature_K=85.0)
    assert has_reference_energies(ready) and ready.fingerprint == parameter_fingerprint(lj)
    torch.testing.assert_close(ready.energies_eV, frame_energies(lj, traj), rtol=0, atol=0)
    assert float(ready.energies_eV.abs().min()) > 0.1


def test_box_bounds_orthogonal_and_general_triclinic():
    from exprefine.io import box_from_bounds

    cell, origin, pbc = box_from_bounds(["pp", "pp", "fs"], ["-1.0 4.0", "0.0 6.0", "2.0 9.5"])
    np.testing.assert_allclose(cell, np.diag([5.0, 6.0, 7.5]))
    np.testing.assert_allclose(origin, [-1.0, 0.0, 2.0])
    assert pbc.tolist() == [True, True, False]
    lines = [" ".join(f"{v:.12f}" for v in [*CELL[k], ORIGIN[k]]) for k in range(3)]
    cell, origin, pbc = box_from_bounds(["abc", "origin", "pp", "pp", "pp"], lines)
    np.testing.assert_allclose(cell, CELL, atol=1e-12)
    np.testing.assert_allclose(origin, ORIGIN, atol=1e-12)
    # restricted triclinic: the bounds LAMMPS writes for CELL at ORIGIN give CELL and ORIGIN back
    cell, origin, _ = box_from_bounds(["xy", "xz", "yz", "pp", "pp", "pp"], bounds_lines(CELL, ORIGIN))
    np.testing.assert_allclose(cell, CELL, atol=1e-9)
    np.testing.assert_allclose(origin, ORIGIN, atol=1e-9)
