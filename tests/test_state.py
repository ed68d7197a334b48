"""State: conversions from and to ASE (units of velocities included), files, batching, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms, units
from ase.build import bulk, molecule

from exprefine.state import State, concatenate, from_atoms, read_state, replicate, write_state


def _argon(seed: int = 0) -> Atoms:
    atoms = bulk("Ar", "fcc", a=5.26) * (2, 2, 2)
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.05, 0.0], [0.0, 1.0, -0.03], [0.02, 0.0, 1.0]]), scale_atoms=True)
    atoms.rattle(0.05, seed=seed)
    rng = np.random.default_rng(seed)
    atoms.set_velocities(rng.normal(scale=0.01, size=(len(atoms), 3)))
    return atoms


def _water() -> Atoms:
    return molecule("H2O")


def test_from_atoms_to_atoms_round_trip_with_velocities():
    atoms = _argon()
    state = from_atoms(atoms)
    assert state.dtype == torch.float64 and state.n_systems == 1 and state.n_atoms == len(atoms)
    np.testing.assert_allclose(state.positions.numpy(), atoms.get_positions(), rtol=0, atol=1e-14)
    np.testing.assert_allclose(state.cell[0].numpy(), atoms.cell.array, rtol=0, atol=1e-14)
    np.testing.assert_array_equal(state.masses.numpy(), atoms.get_masses())
    # ASE velocity unit: Å per ASE time unit; 1 fs = units.fs ASE time units (ASE uses
    # CODATA 2014 constants, exprefine CODATA 2018: they differ by 4e-9 relative)
    np.testing.assert_allclose(state.velocities.numpy(), atoms.get_velocities() * units.fs, rtol=1e-8)
    back = state.to_atoms()[0]
    np.testing.assert_allclose(back.get_positions(), atoms.get_positions(), atol=1e-14)
    np.testing.assert_allclose(back.cell.array, atoms.cell.array, atol=1e-14)
    np.testing.assert_array_equal(back.pbc, atoms.pbc)
    np.testing.assert_array_equal(back.numbers, atoms.numbers)
    np.testing.assert_allclose(back.get_velocities(), atoms.get_velocities(), rtol=1e-12)
    np.testing.assert_allclose(back.get_kinetic_energy(), atoms.get_kinetic_energy(), rtol=1e-12)


def test_kinetic_energy_in_internal_units_matches_ase():
    from exprefine.units import AMU_A2_PER_FS2_IN_eV

    atoms = _argon(1)
    state = from_atoms(atoms)
    ke_eV = 0.5 * float((state.masses[:, None] * state.velocities**2).sum()) * AMU_A2_PER_FS2_IN_eV
    assert ke_eV == pytest.approx(atoms.get_kinetic_energy(), rel=1e-12)


def test_molecule_without_velocities_and_float32():
    state = from_atoms(_water(), dtype=torch.float32)
    assert state.velocities is None
    assert state.positions.dtype == torch.float32 and state.masses.dtype == torch.float32
    assert not bool(state.pbc.any())
    assert state.to(dtype=torch.float64).positions.dtype == torch.float64
    assert state.to(dtype=torch.float64).atomic_numbers.dtype == torch.long


def test_extxyz_round_trip(tmp_path):
    frames = [_argon(0), _argon(1)]
    state = from_atoms(frames)
    path = tmp_path / "two.extxyz"
    write_state(path, state)
    back = read_state(path, index=":")
    assert back.n_systems == 2
    # extxyz stores 8 decimals
    torch.testing.assert_close(back.positions, state.positions, rtol=0, atol=1e-7)
    torch.testing.assert_close(back.cell, state.cell, rtol=0, atol=1e-7)
    assert torch.equal(back.pbc, state.pbc)
    assert torch.equal(back.atomic_numbers, state.atomic_numbers)
    assert torch.equal(back.system_idx, state.system_idx)
    assert back.velocities is not None
    torch.testing.assert_close(back.velocities, state.velocities, rtol=1e-6, atol=1e-9)
    last = read_state(path)  # default index -1: the last frame
    torch.testing.assert_close(last.positions, state.split()[1].positions, rtol=0, atol=1e-7)


def test_concatenate_replicate_split():
    a, w = from_atoms(_argon()), from_atoms(_water())
    both = concatenate([a, w])
    assert both.n_systems == 2 and both.n_atoms == a.n_atoms + w.n_atoms
    assert both.n_atoms_per_system.tolist() == [a.n_atoms, w.n_atoms]
    assert both.velocities is None  # the molecule has none
    parts = both.split()
    assert torch.equal(parts[0].positions, a.positions) and torch.equal(parts[1].positions, w.positions)
    assert torch.equal(parts[1].cell, w.cell) and torch.equal(parts[1].pbc, w.pbc)
    assert torch.equal(parts[1].system_idx, torch.zeros(w.n_atoms, dtype=torch.long))

    rep = replicate(a, 3)
    assert rep.n_systems == 3 and rep.system_idx.tolist() == sum([[s] * a.n_atoms for s in range(3)], [])
    assert torch.equal(rep.velocities, a.velocities.repeat(3, 1))
    rep.positions[0, 0] += 1.0  # copies are independent of the original
    assert not torch.equal(rep.positions[:1], a.positions[:1])

    nested = concatenate([rep, both])
    assert nested.n_systems == 5 and nested.system_idx.max().item() == 4
    assert len(nested.to_atoms()) == 5


def _tensors(n: int = 2) -> dict:
    return dict(
        positions=torch.zeros(n, 3, dtype=torch.float64),
        cell=torch.eye(3, dtype=torch.float64).unsqueeze(0) * 10,
        pbc=torch.ones(1, 3, dtype=torch.bool),
        atomic_numbers=torch.full((n,), 18),
        masses=torch.full((n,), 39.95, dtype=torch.float64),
        system_idx=torch.zeros(n, dtype=torch.long),
    )


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(positions=torch.zeros(2, 2, dtype=torch.float64)), "positions"),
        (dict(atomic_numbers=torch.full((3,), 18)), "atomic_numbers"),
        (dict(masses=torch.ones(1, dtype=torch.float64)), "masses"),
        (dict(velocities=torch.zeros(2, 2, dtype=torch.float64)), "velocities"),
        (dict(system_idx=torch.tensor([1, 0]), cell=torch.eye(3).repeat(2, 1, 1)), "sorted"),
        (dict(system_idx=torch.tensor([0, 1])), "system"),  # two systems named, one cell
        (dict(pbc=torch.ones(2, 3, dtype=torch.bool)), "pbc"),  # two pbc rows, one cell
    ],
)
def test_bad_state_raises(change, message):
    kwargs = _tensors()
    kwargs.update(change)
    with pytest.raises(ValueError, match=message):
        State(**kwargs)


def test_bad_conversions_raise(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        concatenate([])
    with pytest.raises(ValueError, match="no atoms"):
        from_atoms(Atoms())
    with pytest.raises(ValueError, match="singular"):
        from_atoms(Atoms("Ar2", positions=[[0, 0, 0], [1, 0, 0]], cell=np.zeros((3, 3)), pbc=True))
    with pytest.raises(FileNotFoundError, match="missing.xyz"):
        read_state(tmp_path / "missing.xyz")
    garbage = tmp_path / "garbage.extxyz"
    garbage.write_text("this is not\na structure file\n")
    with pytest.raises(ValueError, match="garbage.extxyz"):
        read_state(garbage)


def test_trajectory_select_and_concatenate_keep_every_per_frame_field():
    from conftest import make_trajectory

    rng = np.random.default_rng(0)
    traj = make_trajectory(rng.normal(size=(5, 4, 3)), np.stack([np.eye(3) * (10 + k) for k in range(5)]),
                           np.array([18, 18, 18, 18]))
    traj.energies_eV = torch.arange(5, dtype=torch.float64)
    picked = traj.select(torch.tensor([True, False, True, False, True]))
    assert picked.n_frames == 3 and picked.energies_eV.tolist() == [0.0, 2.0, 4.0]
    assert torch.equal(picked.cells_A[1], traj.cells_A[2]) and picked.fingerprint == traj.fingerprint
    assert traj.select(slice(1, 3)).energies_eV.tolist() == [1.0, 2.0]
    joined = type(traj).concatenate([traj.select([3, 4]), traj.select([0])])
    assert joined.energies_eV.tolist() == [3.0, 4.0, 0.0]
    assert torch.equal(joined.positions_A[2], traj.positions_A[0])
    other = make_trajectory(rng.normal(size=(1, 4, 3)), np.eye(3)[None] * 10, np.array([10, 10, 10, 10]))
    with pytest.raises(ValueError, match="trajectory 1 holds other atoms"):
        type(traj).concatenate([traj, other])
