"""DFT data sets: extxyz and DeePMD round trips, one-line errors, splits and error metrics.

Labels come from exprefine's own Lennard-Jones potential (argon / krypton), so every number
that comes back can be compared with a known value.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.io import write

from conftest import argon_lattice, argon_lj
from exprefine.data import (
    DFTDataset,
    concatenate_datasets,
    dft_errors,
    evaluate_dft_errors,
    label_with_potential,
    load_split,
    predict,
    read_extxyz,
    split,
)
from exprefine.potentials import ExprefineCalculator, LennardJones, Potential, SumPotential
from exprefine.state import State
from exprefine.units import kelvin_to_eV

SPECIES = ["Ar", "Kr"]


def mixture_lj() -> LennardJones:
    """Ar/Kr Lennard-Jones (pairs Ar-Ar, Ar-Kr, Kr-Kr)."""
    return LennardJones(SPECIES, [3.405, 3.5, 3.6], [kelvin_to_eV(119.8), kelvin_to_eV(140.0), kelvin_to_eV(164.0)],
                        cutoff_A=7.0)


def mixture_frames(n: int, seed: int = 0, compress: float = 0.93) -> list[Atoms]:
    """32-atom fcc Ar/Kr mixtures (one random composition per seed), compressed, strained and rattled."""
    rng = np.random.default_rng(seed)
    symbols = np.where(rng.uniform(size=32) < 0.3, "Kr", "Ar")
    frames = []
    for _ in range(n):
        atoms = argon_lattice(2)
        atoms.set_chemical_symbols(symbols.tolist())
        strain = np.eye(3) * compress + rng.normal(scale=0.01, size=(3, 3))
        atoms.set_cell(atoms.cell.array @ strain, scale_atoms=True)
        atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
        frames.append(atoms)
    return frames


def cluster_frames(n: int, seed: int = 1) -> list[Atoms]:
    """Non-periodic 6-atom argon clusters."""
    rng = np.random.default_rng(seed)
    base = np.array([[0, 0, 0], [3.8, 0, 0], [0, 3.8, 0], [0, 0, 3.8], [3.8, 3.8, 0], [3.8, 0, 3.8]], dtype=float)
    return [Atoms("Ar6", positions=base + rng.normal(scale=0.1, size=base.shape)) for _ in range(n)]


def labelled_with_calculator(frames: list[Atoms], potential: Potential) -> list[Atoms]:
    """Frames with SinglePointCalculator labels computed by ExprefineCalculator."""
    out = []
    for atoms in frames:
        atoms = atoms.copy()
        atoms.calc = ExprefineCalculator(potential)
        results = {"energy": atoms.get_potential_energy(), "forces": atoms.get_forces()}
        if atoms.pbc.all():
            results["stress"] = atoms.get_stress()
        atoms.calc = SinglePointCalculator(atoms, **results)
        out.append(atoms)
    return out


# ------------------------------------------------------------------ extxyz
def test_extxyz_round_trip_keeps_labels(tmp_path):
    lj = mixture_lj()
    frames = labelled_with_calculator(mixture_frames(3) + cluster_frames(2), lj)
    path = tmp_path / "frames.extxyz"
    write(str(path), frames, format="extxyz")

    data = read_extxyz(path)
    assert data.n_frames == 5 and data.n_atoms_total == 3 * 32 + 2 * 6
    assert data.has_stress.tolist() == [True, True, True, False, False]
    energies = np.array([a.get_potential_energy() for a in frames])
    forces = np.concatenate([a.get_forces() for a in frames])
    np.testing.assert_allclose(data.energies_eV.numpy(), energies, rtol=0, atol=1e-8)
    np.testing.assert_allclose(data.forces_eV_per_A.numpy(), forces, rtol=0, atol=1e-7)
    # the labels are LJ's own: re-evaluating LJ on the read positions gives them back
    again = predict(lj, data)
    np.testing.assert_allclose(again.energies_eV.numpy(), energies, rtol=0, atol=1e-6)
    np.testing.assert_allclose(again.stress_eV_per_A3[:3].numpy(), data.stress_eV_per_A3[:3].numpy(), rtol=0, atol=1e-8)
    assert data.stress_eV_per_A3.dtype == torch.float64


def test_extxyz_reads_custom_keys_and_virials(tmp_path):
    lj = mixture_lj()
    labelled = labelled_with_calculator(mixture_frames(2, seed=5), lj)
    frames = []
    for atoms in labelled:
        ref = atoms.copy()  # labels only in info / arrays under non-standard names
        ref.info["REF_energy"] = atoms.get_potential_energy()
        ref.arrays["REF_forces"] = atoms.get_forces()
        ref.info["REF_virial"] = -atoms.get_volume() * atoms.get_stress(voigt=False)
        frames.append(ref)
    path = tmp_path / "ref.extxyz"
    write(str(path), frames, format="extxyz")
    data = read_extxyz(path, energy_key="REF_energy", forces_key="REF_forces", stress_key=None,
                       virial_key="REF_virial")
    expected = np.stack([a.get_stress(voigt=False) for a in labelled])
    np.testing.assert_allclose(data.stress_eV_per_A3.numpy(), expected, rtol=1e-7, atol=1e-10)
    assert bool(data.has_stress.all())


def test_missing_label_names_file_frame_and_key_in_one_line(tmp_path):
    frames = labelled_with_calculator(cluster_frames(3), argon_lj())
    frames[2] = frames[2].copy()  # copy() drops the calculator: frame 2 has positions only
    path = tmp_path / "partial.extxyz"
    write(str(path), frames, format="extxyz")
    with pytest.raises(ValueError) as err:
        read_extxyz(path, energy_key="energy")
    message = str(err.value)
    assert str(path) in message and "frame 2" in message and "'energy'" in message
    assert "\n" not in message
    with pytest.raises(ValueError, match=r"frame 0 has no forces 'dft_forces'"):
        read_extxyz(path, forces_key="dft_forces")


# ------------------------------------------------------------------ DeePMD
def test_deepmd_round_trip_and_virial_sign(tmp_path):
    pytest.importorskip("dpdata")
    from exprefine.data import read_deepmd, write_deepmd

    lj = mixture_lj()
    # three systems: 32-atom mixtures of two compositions, and non-periodic argon clusters
    original = concatenate_datasets([label_with_potential(lj, mixture_frames(3, seed=2)),
                                     label_with_potential(lj, mixture_frames(2, seed=3)),
                                     label_with_potential(lj, cluster_frames(2))])

    for fmt in ("deepmd/npy", "deepmd/raw"):
        out = tmp_path / fmt.replace("/", "_")
        systems = write_deepmd(original, out, fmt=fmt)
        assert len(systems) == 3 and all((s / "type.raw").is_file() for s in systems)
        assert (systems[0] / "type_map.raw").read_text().split() == ["Ar", "Kr"]
        back = read_deepmd(out)
        for name in ("positions_A", "atomic_numbers", "atoms_per_frame", "pbc", "has_stress", "energies_eV",
                     "forces_eV_per_A"):
            assert torch.equal(getattr(back, name), getattr(original, name)), (fmt, name)
        torch.testing.assert_close(back.stress_eV_per_A3, original.stress_eV_per_A3, rtol=1e-14, atol=1e-18)
        assert back.pbc[:5].all() and not back.pbc[5:].any()

    # on disk: DeePMD's virial W = −V·σ, with σ exprefine's own LJ stress (ASE convention)
    virial = np.load(tmp_path / "deepmd_npy" / systems[0].name / "set.000" / "virial.npy").reshape(-1, 3, 3)
    first = original[0]
    stress = lj.compute(first.batch([0]).state, stress=True).stress_eV_per_A3[0].numpy()
    volume = float(first.volumes_A3()[0])
    np.testing.assert_allclose(virial[0], -volume * stress, rtol=1e-12, atol=1e-14)
    # compressed LJ: positive pressure −tr(σ)/3 > 0, so the virial (repulsive) has a positive trace
    assert -np.trace(stress) / 3 > 0 and np.trace(virial[0]) > 0

    with pytest.raises(FileExistsError):
        write_deepmd(original, tmp_path / "deepmd_npy")


# ------------------------------------------------------------------ splits
def test_split_is_reproducible_disjoint_and_complete(tmp_path):
    data = label_with_potential(argon_lj(), cluster_frames(20, seed=4))
    a = split(data, (0.8, 0.1, 0.1), seed=3)
    b = split(data, (0.8, 0.1, 0.1), seed=3)
    c = split(data, (0.8, 0.1, 0.1), seed=4)
    assert (a.train_indices, a.valid_indices, a.test_indices) == (b.train_indices, b.valid_indices, b.test_indices)
    assert a.train_indices != c.train_indices
    assert (len(a.train_indices), len(a.valid_indices), len(a.test_indices)) == (16, 2, 2)
    parts = [set(a.train_indices), set(a.valid_indices), set(a.test_indices)]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set.union(*parts) == set(range(20))
    assert torch.equal(a.valid.energies_eV, data.energies_eV[a.valid_indices])

    path = a.save_indices(tmp_path / "split.json")
    assert json.loads(path.read_text())["test"] == a.test_indices
    again = load_split(data, path)
    assert again.train_indices == a.train_indices and torch.equal(again.test.positions_A, a.test.positions_A)
    with pytest.raises(ValueError, match="splits 20 frames"):
        load_split(data.subset(range(10)), path)


def test_config_reads_gz_globs_and_splits_by_frame_name(tmp_path):
    """dft.file may be a glob over compressed shards; split_key gives the key-hash split of the names."""
    from exprefine.builders import build_dft_split
    from exprefine.config import parse_config
    from exprefine.data import split_by_key

    frames = labelled_with_calculator(cluster_frames(12, seed=5), argon_lj())
    for i, atoms in enumerate(frames):
        atoms.info["frame_key"] = f"cluster-{i:03d}"
    (tmp_path / "shards").mkdir()
    write(str(tmp_path / "shards" / "a.extxyz.gz"), frames[:7], format="extxyz")
    write(str(tmp_path / "shards" / "b.extxyz.gz"), frames[7:], format="extxyz")
    raw = {
        "run_dir": "run",
        "system": {"lattice": {"element": "Ar", "kind": "fcc", "number_density_per_A3": 0.02125, "repeat": [2, 2, 2]}},
        "potential": {"terms": [{"kind": "lennard_jones", "species": ["Ar"], "sigma_A": 3.4, "epsilon_K": 120.0,
                                 "cutoff_A": 8.0}]},
        "sampling": {"temperature_K": 85.0, "timestep_fs": 10.0, "equilibration_ps": 0.0, "production_ps": 0.1,
                     "frame_interval_fs": 100.0},
        "dft": {"file": "shards/*.extxyz.gz", "split_key": "frame_key", "split_fractions": [0.5, 0.25, 0.25],
                "split_seed": 7},
    }
    parts = build_dft_split(parse_config(raw, base=tmp_path))
    assert parts.train.n_frames + parts.valid.n_frames + parts.test.n_frames == 12
    np.testing.assert_allclose(parts.test.energies_eV.numpy(),
                               [frames[i].get_potential_energy() for i in parts.test_indices], atol=1e-8)
    direct = split_by_key(label_with_potential(argon_lj(), frames), [a.info["frame_key"] for a in frames],
                          (0.5, 0.25, 0.25), seed=7)
    assert (parts.train_indices, parts.test_indices) == (direct.train_indices, direct.test_indices)
    assert json.loads((tmp_path / "run" / "dft_split.json").read_text())["scheme"] == "key_hash"

    # a shard added later: its frames get their own subsets, the old frames keep theirs (same run_dir)
    more = labelled_with_calculator(cluster_frames(6, seed=9), argon_lj())
    for i, atoms in enumerate(more):
        atoms.info["frame_key"] = f"cluster-{12 + i:03d}"
    write(str(tmp_path / "shards" / "c.extxyz.gz"), more, format="extxyz")
    grown = build_dft_split(parse_config(raw, base=tmp_path))
    assert grown.train.n_frames + grown.valid.n_frames + grown.test.n_frames == 18
    assert [i for i in grown.test_indices if i < 12] == parts.test_indices

    raw["run_dir"] = "run2"
    raw["dft"]["split_key"] = "no_such_key"
    with pytest.raises(ValueError, match=r"a.extxyz.gz: frame 0 has no info key 'no_such_key'"):
        build_dft_split(parse_config(raw, base=tmp_path))
    raw["dft"]["file"] = ["shards/*.xyz"]
    with pytest.raises(FileNotFoundError, match=r"no file matches .*shards/\*\.xyz"):
        build_dft_split(parse_config(raw, base=tmp_path))


# ------------------------------------------------------------------ metrics
class PerAtomOffset(Potential):
    """E = δ · N_atoms: shifts energies by δ per atom, no forces, no stress."""

    def __init__(self, delta_eV: float) -> None:
        super().__init__()
        self.delta_eV = delta_eV

    def energy(self, state: State) -> torch.Tensor:
        return self.delta_eV * state.n_atoms_per_system.to(state.dtype) + 0.0 * state.positions.sum()


def test_errors_vanish_on_own_labels_and_measure_an_energy_offset():
    lj = mixture_lj()
    data = concatenate_datasets([label_with_potential(lj, mixture_frames(3, seed=6)),
                                 label_with_potential(lj, cluster_frames(2))])
    own = evaluate_dft_errors(lj, data, batch_size=2)
    assert own.energy_rmse_meV_per_atom < 1e-9 and own.force_rmse_meV_per_A < 1e-9
    assert own.stress_rmse_meV_per_A3 is not None and own.stress_rmse_meV_per_A3 < 1e-9
    assert own.n_frames == 5 and own.n_atoms == 3 * 32 + 12 and own.n_stress_frames == 3

    delta_eV = 0.0123
    shifted = evaluate_dft_errors(SumPotential([lj, PerAtomOffset(delta_eV)]), data, batch_size=4)
    assert shifted.energy_rmse_meV_per_atom == pytest.approx(12.3, abs=1e-9)
    assert shifted.energy_mae_meV_per_atom == pytest.approx(12.3, abs=1e-9)
    assert shifted.force_rmse_meV_per_A < 1e-9 and shifted.stress_rmse_meV_per_A3 < 1e-9
    table = shifted.format_table()
    assert "12.3" in table and "meV/atom" in table and "Kr" in table


def test_per_element_force_errors_add_up():
    lj = mixture_lj()
    data = label_with_potential(lj, mixture_frames(4, seed=7))
    pred = predict(lj, data)
    is_kr = data.atomic_numbers == 36
    noise = torch.as_tensor(np.random.default_rng(0).normal(scale=0.02, size=(data.n_atoms_total, 3)))
    pred.forces_eV_per_A = pred.forces_eV_per_A + noise * is_kr[:, None]
    kr_only = dft_errors(data, pred)
    assert kr_only.force_rmse_by_element_meV_per_A["Ar"] < 1e-9
    assert kr_only.force_rmse_by_element_meV_per_A["Kr"] == pytest.approx(
        1000 * float(noise[is_kr].pow(2).mean().sqrt()), rel=1e-9)

    pred.forces_eV_per_A = pred.forces_eV_per_A + noise
    errors = dft_errors(data, pred)
    n = errors.n_atoms_by_element
    assert sum(n.values()) == data.n_atoms_total
    total_sq = sum(n[e] * errors.force_rmse_by_element_meV_per_A[e] ** 2 for e in n)
    assert total_sq == pytest.approx(data.n_atoms_total * errors.force_rmse_meV_per_A ** 2, rel=1e-12)
    total_abs = sum(n[e] * errors.force_mae_by_element_meV_per_A[e] for e in n)
    assert total_abs == pytest.approx(data.n_atoms_total * errors.force_mae_meV_per_A, rel=1e-12)
    assert errors.energy_rmse_meV_per_atom < 1e-9


def test_dataset_batches_subsets_and_save(tmp_path):
    data = concatenate_datasets([label_with_potential(argon_lj(), cluster_frames(3)),
                                 label_with_potential(mixture_lj(), mixture_frames(2, seed=8))])
    batches = list(data.batches(2))
    assert [b.n_frames for b in batches] == [2, 2, 1]
    assert batches[2].state.n_atoms == 32 and bool(batches[2].has_stress[0])
    assert torch.equal(torch.cat([b.forces_eV_per_A for b in batches]), data.forces_eV_per_A)
    shuffled = [b.frame_indices.tolist() for b in data.batches(2, shuffle=True, generator=torch.Generator().manual_seed(1))]
    assert sorted(sum(shuffled, [])) == list(range(5))
    sub = data[[4, 0]]
    assert sub.atoms_per_frame.tolist() == [32, 6]
    assert torch.equal(sub.forces_eV_per_A[:32], data.forces_eV_per_A[50:82])
    data.save(tmp_path / "d.pt")
    back = DFTDataset.load(tmp_path / "d.pt")
    assert torch.equal(back.stress_eV_per_A3, data.stress_eV_per_A3) and back.n_frames == 5
    with pytest.raises(ValueError, match="frame 1 has non-finite energies_eV"):
        bad = data.energies_eV.clone()
        bad[1] = float("nan")
        DFTDataset(data.positions_A, data.atomic_numbers, data.atoms_per_frame, data.cells_A, data.pbc, bad,
                   data.forces_eV_per_A, data.stress_eV_per_A3, data.has_stress)
