"""build_pairs finds exactly the pairs (i, j, S) that ASE's neighbour list finds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk, molecule
from ase.neighborlist import neighbor_list

from exprefine.neighbors import build_pairs, cell_heights_A
from exprefine.state import concatenate, from_atoms


def _triclinic(seed: int = 0) -> Atoms:
    atoms = bulk("Cu", "fcc", a=3.6) * (2, 2, 2)
    strain = np.array([[1.0, 0.08, -0.05], [0.0, 1.1, 0.07], [0.04, 0.0, 0.95]])
    atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
    atoms.rattle(0.1, seed=seed)
    return atoms


def _mixed_pbc() -> Atoms:
    atoms = _triclinic(1)
    atoms.pbc = [True, False, True]
    return atoms


def _molecule() -> Atoms:
    atoms = molecule("CH3CH2OH")
    atoms.rattle(0.01, seed=3)
    return atoms


def _small_cell() -> Atoms:
    atoms = bulk("Ar", "fcc", a=5.26)  # primitive cell, face distance ≈ 3.04 Å
    atoms = atoms * (1, 1, 2)
    atoms.rattle(0.05, seed=4)
    return atoms


def _pairs_as_set(i, j, shifts) -> set[tuple[int, int, int, int, int]]:
    """Full-list set: each half-list pair (i, j, S) also as (j, i, −S)."""
    out = set()
    for a, b, s in zip(np.asarray(i).tolist(), np.asarray(j).tolist(), np.asarray(shifts).tolist()):
        out.add((a, b, *s))
        out.add((b, a, *(-x for x in s)))
    return out


def _ase_pairs(atoms: Atoms, cutoff: float) -> set[tuple[int, int, int, int, int]]:
    i, j, S = neighbor_list("ijS", atoms, cutoff)
    return {(a, b, *s) for a, b, s in zip(i.tolist(), j.tolist(), S.tolist())}


@pytest.mark.parametrize(
    "make, cutoff",
    [(_triclinic, 4.3), (_molecule, 2.5), (_mixed_pbc, 4.3), (_small_cell, 7.5)],
    ids=["triclinic", "molecule", "mixed_pbc", "cutoff_larger_than_cell"],
)
def test_same_pairs_as_ase(make, cutoff):
    atoms = make()
    state = from_atoms(atoms)
    pairs = build_pairs(state, cutoff)
    ours = _pairs_as_set(pairs.i, pairs.j, pairs.shifts)
    assert 2 * pairs.n_pairs == len(ours)  # a half list: no pair twice
    assert ours == _ase_pairs(atoms, cutoff)
    # the pair vectors are the ASE distance vectors
    d = pairs.vectors(state.positions, state.cell).norm(dim=-1)
    assert bool((d < cutoff).all())
    D = neighbor_list("D", atoms, cutoff)
    full_d = np.sort(np.concatenate([d.numpy(), d.numpy()]))
    np.testing.assert_allclose(full_d, np.sort(np.linalg.norm(D, axis=1)), rtol=0, atol=1e-12)


def test_cutoff_larger_than_cell_really_is():
    atoms = _small_cell()
    assert cell_heights_A(atoms.cell.array).min() < 7.5 / 2


def test_full_list_and_batch_offsets():
    a, m = _triclinic(2), _molecule()
    state = concatenate([from_atoms(a), from_atoms(m)])
    pairs = build_pairs(state, 3.0, full_list=True)
    na = len(a)
    first = pairs.system == 0
    second = pairs.system == 1
    assert bool((pairs.i[first] < na).all()) and bool((pairs.j[first] < na).all())
    assert bool((pairs.i[second] >= na).all()) and bool((pairs.j[second] >= na).all())
    full_a = {(x, y, *s) for x, y, s in zip(pairs.i[first].tolist(), pairs.j[first].tolist(), pairs.shifts[first].tolist())}
    assert full_a == _ase_pairs(a, 3.0)
    full_m = {
        (x - na, y - na, *s)
        for x, y, s in zip(pairs.i[second].tolist(), pairs.j[second].tolist(), pairs.shifts[second].tolist())
    }
    assert full_m == _ase_pairs(m, 3.0)


def test_vectors_are_differentiable_in_positions_and_cell():
    state = from_atoms(_triclinic())
    pairs = build_pairs(state, 4.0)
    pos = state.positions.clone().requires_grad_(True)
    cell = state.cell.clone().requires_grad_(True)
    pairs.vectors(pos, cell).norm(dim=-1).sum().backward()
    assert pos.grad is not None and cell.grad is not None and bool(cell.grad.abs().sum() > 0)


def test_bad_cutoff_raises():
    with pytest.raises(ValueError, match="cutoff"):
        build_pairs(from_atoms(_molecule()), 0.0)
    assert torch.is_tensor(build_pairs(from_atoms(_molecule()), 1.0).i)


def test_verlet_cache_gives_the_same_energies_as_fresh_lists():
    """Along an MD run the cached (skin) pair list must give exactly the energies and forces of a fresh list."""
    import torch
    from ase.build import bulk

    from exprefine.potentials import LennardJones
    from exprefine.sampling import SamplerSettings, sample
    from exprefine.state import from_atoms

    atoms = bulk("Ar", "fcc", a=5.8, cubic=True).repeat((3, 3, 3))
    cached = LennardJones(["Ar"], 3.405, 0.0103, cutoff_A=8.0)
    fresh = LennardJones(["Ar"], 3.405, 0.0103, cutoff_A=8.0)
    fresh.pair_cache.skin_A = 0.0
    settings = SamplerSettings(temperature_K=150.0, timestep_fs=10.0, n_equilibration_steps=0,
                               n_production_steps=200, stride_steps=20, seed=4)
    traj = sample(cached, from_atoms(atoms), settings).trajectory
    assert 1 < cached.pair_cache.n_builds < 200  # reused between steps, rebuilt when atoms moved
    for k in range(traj.n_frames):
        state = traj.as_state([k])
        a, b = cached.compute(state), fresh.compute(state)
        assert torch.allclose(a.energy_eV, b.energy_eV, rtol=1e-12, atol=1e-12)
        assert torch.allclose(a.forces_eV_per_A, b.forces_eV_per_A, rtol=1e-10, atol=1e-12)
    # the stored reference energies were computed with the cache during MD
    assert torch.allclose(traj.energies_eV, torch.cat([fresh.energy(traj.as_state([k])) for k in range(traj.n_frames)]),
                          rtol=1e-12, atol=1e-12)
