"""The g-C3N4 data-set pipeline (examples/gcn/make_dataset.py): seed configurations, resumable
sharded labelling, the key-hash split, the MD exploration guard and the MACE set-up helpers."""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.singlepoint import SinglePointCalculator
from ase.neighborlist import neighbor_list

from conftest import REPO, argon_lattice
from exprefine.data import dataset_from_atoms, fit_atomic_energies, load_split, split_by_key
from exprefine.potentials import LennardJones
from exprefine.units import kelvin_to_eV

GCN_DIR = REPO / "examples" / "gcn"


@pytest.fixture(scope="module")
def script():
    """examples/gcn/make_dataset.py (and its dataset_recipe.py) as modules."""
    sys.path.insert(0, str(GCN_DIR))
    try:
        module = importlib.import_module("make_dataset")
        recipe = importlib.import_module("dataset_recipe")
    finally:
        sys.path.remove(str(GCN_DIR))
    return module, recipe


# ------------------------------------------------------------------ seed configurations
def test_seed_frames_have_the_requested_cells_defects_and_spacings(script):
    _, rc = script
    recipe = rc.SeedRecipe()  # 2×2 bilayers
    frames = rc.seed_frames(recipe, seed=0, n_frames=40)
    a0 = recipe.lattice_constant_A
    kinds, stackings = set(), set()
    for atoms in frames:
        assert len(atoms) == 112 and atoms.pbc.all()
        cell = np.asarray(atoms.cell)
        d = atoms.info["interlayer_spacing_A"]
        assert 2.9 <= d <= 4.0
        assert cell[2] == pytest.approx([0.0, 0.0, 2.0 * d])  # bulk bilayer: c = 2d, strain in-plane only
        for row in cell[:2]:
            assert 2 * a0 * 0.96 < np.linalg.norm(row) < 2 * a0 * 1.04  # 2×2 cell, |ε| ≤ 2 %
        n_def = atoms.info["n_carbon_defects"]
        kind = atoms.info["defect_kind"]
        expected_roles = {"pristine": [], "central_N": ["central_N"] * 2, "bridging_N": ["bridging_N"] * 2,
                          "mixed": ["bridging_N", "central_N"]}[kind]
        assert sorted(atoms.arrays["roles"][atoms.arrays["defect"]].tolist()) == expected_roles
        assert n_def == len(expected_roles)
        symbols = atoms.get_chemical_symbols()
        assert symbols.count("C") == 48 + n_def and symbols.count("N") == 64 - n_def
        assert (atoms.numbers.sum() % 2) == 0  # even electron count
        assert neighbor_list("d", atoms, 1.05).size == 0  # rattles do not crush bonds
        assert 0.0 < atoms.info["rattle_sigma_in_plane_A"] < atoms.info["rattle_sigma_out_of_plane_A"] < 0.1
        kinds.add(kind)
        stackings.add(atoms.info["stacking"])
    assert kinds == {"pristine", "central_N", "bridging_N", "mixed"} and stackings == {"AB", "AA'"}
    spacings = [a.info["interlayer_spacing_A"] for a in frames]
    assert min(spacings) < 3.2 and max(spacings) > 3.7


def test_seed_frames_are_deterministic_and_independent_of_the_count(script):
    _, rc = script
    recipe = rc.SeedRecipe()
    a = rc.seed_frames(recipe, seed=3, n_frames=5)
    b = rc.seed_frames(recipe, seed=3, n_frames=3)
    c = rc.seed_frames(recipe, seed=4, n_frames=3)
    for x, y in zip(a[:3], b):
        assert np.array_equal(x.positions, y.positions) and np.array_equal(x.numbers, y.numbers)
        assert np.array_equal(x.cell, y.cell)
    assert not np.allclose(a[0].positions, c[0].positions)
    assert rc.thermal_rattle_sigma_A(300.0, 10.0) == pytest.approx(0.0508, abs=1e-4)  # sqrt(kT/k)


def test_wide_frames_separate_the_layers_on_their_own_streams(script):
    _, rc = script
    recipe = rc.wide_recipe(rc.SeedRecipe())
    wide = rc.wide_frames(recipe, seed=0, n_frames=30)
    spacings = [a.info["interlayer_spacing_A"] for a in wide]
    assert min(spacings) >= 4.0 and max(spacings) <= 8.0 and max(spacings) - min(spacings) > 2.0
    for atoms in wide:
        assert atoms.info["frame_kind"] == "wide" and atoms.info["seed_index"] >= rc.WIDE_INDEX_OFFSET
        assert atoms.cell[2] == pytest.approx([0.0, 0.0, 2.0 * atoms.info["interlayer_spacing_A"]])
    again = rc.wide_frames(recipe, seed=0, n_frames=2, start=1)  # frame i does not depend on the count
    assert np.array_equal(again[0].positions, wide[1].positions)
    seed = rc.seed_frames(rc.SeedRecipe(), seed=0, n_frames=30)  # other streams: other defects and strains
    assert [a.info["strain_xx_yy_xy"] for a in seed] != [a.info["strain_xx_yy_xy"] for a in wide]


def test_one_by_one_cells_only_in_smoke_mode(script):
    md, _ = script
    with pytest.raises(ValueError, match="at least 2×2"):
        md.pipeline_from_args(md.build_parser().parse_args(["--supercell", "1", "1"]))
    smoke = md.pipeline_from_args(md.build_parser().parse_args(["--smoke"]))
    assert smoke.recipe.supercell == (1, 1) and smoke.train.epochs == 2 and "smoke" in smoke.out_dir.name


# ------------------------------------------------------------------ resumable labelling
def test_restarted_seed_stage_does_not_recompute_finished_frames(script, tmp_path, monkeypatch):
    pytest.importorskip("tblite")
    from tblite.ase import TBLite

    md, rc = script
    calls = []
    original = TBLite.calculate

    def counting(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(TBLite, "calculate", counting)
    pipeline = md.Pipeline(out_dir=tmp_path / "ds", model_path=tmp_path / "m.model", n_seed=3, shard_size=4,
                           recipe=rc.SeedRecipe(supercell=(1, 1)), progress=False)
    layout = md.Layout(pipeline.out_dir)

    report, frames = md.stage_seed(pipeline, layout, budget=None)  # 3 frames: shard 0 is 3 of its 4 slots
    assert (report.n_computed, report.n_labelled, report.complete) == (3, 3, True)
    assert len(calls) == 3
    assert (layout.cache_dir / "seed_000.extxyz").exists() is False  # 3 requested frames: shard complete
    first = (layout.seed_dir / "seed_000.extxyz.gz").read_bytes()

    pipeline.n_seed = 5  # more frames: shard 0 grows to 4, shard 1 gets frame 4
    report, frames = md.stage_seed(pipeline, layout, budget=None)
    assert report.n_computed == 2 and len(calls) == 5 and report.n_labelled == 5 and report.complete
    assert [f.info["seed_index"] for f in frames] == [0, 1, 2, 3, 4]
    assert (layout.seed_dir / "seed_000.extxyz.gz").read_bytes() != first
    assert not any(layout.cache_dir.glob("*.extxyz"))

    before = {p.name: p.stat().st_mtime_ns for p in layout.seed_dir.iterdir()}
    report, again = md.stage_seed(pipeline, layout, budget=None)  # a restart with nothing left to do
    assert report.n_computed == 0 and len(calls) == 5
    assert {p.name: p.stat().st_mtime_ns for p in layout.seed_dir.iterdir()} == before
    for x, y in zip(frames, again):
        assert x.get_potential_energy() == y.get_potential_energy()  # as read back from the shard files
        assert np.array_equal(x.get_forces(), y.get_forces())

    pipeline.n_seed = 7  # a budget of one new label leaves the rest for the next run
    report, _ = md.stage_seed(pipeline, layout, budget=1)
    assert report.n_computed == 1 and not report.complete and len(calls) == 6
    assert len(list(layout.cache_dir.glob("seed_001.extxyz"))) == 1


# ----------------------------------------------------------------------------- the split
def _fake_labelled(n: int, seed: int = 0) -> list[Atoms]:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        atoms = Atoms("CN", positions=[[0, 0, 0], [1.3, 0, 0]], cell=np.eye(3) * 6.0, pbc=True)
        atoms.positions += rng.normal(scale=0.05, size=(2, 3))
        atoms.calc = SinglePointCalculator(atoms, energy=float(rng.normal()), forces=rng.normal(size=(2, 3)))
        atoms.info["frame_key"] = f"sha1:{i:04d}"
        frames.append(atoms)
    return frames


def test_split_json_is_reproducible_and_stable_when_frames_are_added(script, tmp_path):
    md, _ = script
    frames = _fake_labelled(60)
    paths = []
    for k in range(2):
        pipeline = md.Pipeline(out_dir=tmp_path / f"ds{k}", model_path=tmp_path / "m.model")
        paths.append(md.write_split(pipeline, md.Layout(pipeline.out_dir), frames))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    saved = json.loads(paths[0].read_text())
    assert saved["scheme"] == "key_hash" and saved["n_frames"] == 60
    assert len(saved["test"]) > 0 and len(saved["valid"]) > 0
    assert sorted(saved["train"] + saved["valid"] + saved["test"]) == list(range(60))

    dataset = dataset_from_atoms(frames)
    loaded = load_split(dataset, paths[0])
    assert loaded.test_indices == saved["test"] and loaded.scheme == "key_hash"
    assert loaded.frame_keys == [f.info["frame_key"] for f in frames]

    bigger = frames + _fake_labelled(90, seed=1)[60:]
    for i, atoms in enumerate(bigger[60:], start=60):
        atoms.info["frame_key"] = f"sha1:{i:04d}"
    grown = split_by_key(dataset_from_atoms(bigger), [f.info["frame_key"] for f in bigger])
    assert [i for i in grown.test_indices if i < 60] == saved["test"]
    assert [i for i in grown.train_indices if i < 60] == saved["train"]


def test_split_by_key_fills_empty_subsets_of_tiny_sets():
    frames = _fake_labelled(4)
    sp = split_by_key(dataset_from_atoms(frames), [f.info["frame_key"] for f in frames], (0.8, 0.1, 0.1))
    assert len(sp.train_indices) >= 1 and len(sp.valid_indices) >= 1 and len(sp.test_indices) >= 1


# ------------------------------------------------------------------- set-up statistics
def test_least_squares_atomic_energies_recover_exact_references():
    rng = np.random.default_rng(0)
    frames = []
    for _ in range(6):
        n_c, n_n = rng.integers(1, 5, size=2)
        atoms = Atoms(f"C{n_c}N{n_n}", positions=rng.uniform(0, 8, size=(n_c + n_n, 3)), cell=np.eye(3) * 8, pbc=True)
        energy = -150.0 * n_c - 270.0 * n_n
        atoms.calc = SinglePointCalculator(atoms, energy=energy, forces=np.zeros((len(atoms), 3)))
        frames.append(atoms)
    fit = fit_atomic_energies(dataset_from_atoms(frames))
    assert fit.rank == 2 and fit.residual_rmse_meV_per_atom < 1e-6
    assert fit.energies_eV[6] == pytest.approx(-150.0) and fit.energies_eV[7] == pytest.approx(-270.0)


# ------------------------------------------------------------------- MD exploration guard
class ExplodingLennardJones(LennardJones):
    """Argon Lennard-Jones whose energy becomes NaN after ``after_calls`` evaluations."""

    def __init__(self, after_calls: int) -> None:
        super().__init__(["Ar"], 3.405, kelvin_to_eV(119.8), cutoff_A=7.0)
        self.calls = 0
        self.after_calls = after_calls

    def energy(self, state):
        self.calls += 1
        e = super().energy(state)
        return e * float("nan") if self.calls > self.after_calls else e


def test_md_frames_stops_a_blown_up_attempt_and_keeps_earlier_frames():
    from exprefine.data.exploration import ExplorationSettings, md_frames

    potential = LennardJones(["Ar"], 3.405, kelvin_to_eV(119.8), cutoff_A=7.0)
    atoms = argon_lattice(2)
    calm = md_frames(potential, atoms, ExplorationSettings(temperature_K=60.0, n_frames=3, stride_steps=5,
                                                           n_equilibration_steps=5, timestep_fs=5.0, seed=1))
    assert len(calm.frames) == 3 and not calm.stops
    assert [f.info["md_step"] for f in calm.frames] == [10, 15, 20]
    assert all(f.info["md_temperature_K"] == 60.0 for f in calm.frames)

    # every atom needs a neighbour within 3 Å: never true in argon at 3.7 Å spacing → every attempt stops
    lonely = md_frames(potential, atoms, ExplorationSettings(temperature_K=60.0, n_frames=3, stride_steps=5,
                                                             n_equilibration_steps=0, timestep_fs=5.0,
                                                             max_nearest_neighbour_A=3.0, max_restarts=1))
    assert lonely.frames == [] and len(lonely.stops) == 2 and "no neighbour" in lonely.stops[0]

    # energies turn NaN at the 13th evaluation: frames 1 and 2 (evaluations 2–11) are kept
    exploding = ExplodingLennardJones(after_calls=12)
    hot = md_frames(exploding, atoms, ExplorationSettings(temperature_K=60.0, n_frames=5, stride_steps=5,
                                                          n_equilibration_steps=0, timestep_fs=5.0,
                                                          max_restarts=0))
    assert len(hot.frames) == 2 and len(hot.stops) == 1 and "non-finite" in hot.stops[0]


# ----------------------------------------------------------------------- MACE builder
@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning")
@pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD:UserWarning")
def test_build_mace_is_seeded_and_carries_its_settings():
    pytest.importorskip("mace")
    from exprefine.potentials.mace import MacePotential, build_mace

    state = torch.get_rng_state()
    a = build_mace(["N", "C"], 5.5, 8, 1, 2, {"C": -10.0, "N": -20.0}, 30.0, seed=3, max_ell=1, correlation=2)
    assert torch.equal(state, torch.get_rng_state())  # the global random state is untouched
    b = build_mace([7, 6], 5.5, 8, 1, 2, {6: -10.0, 7: -20.0}, 30.0, seed=3, max_ell=1, correlation=2)
    c = build_mace(["C", "N"], 5.5, 8, 1, 2, {"C": -10.0, "N": -20.0}, 30.0, seed=4, max_ell=1, correlation=2)
    pa, pb, pc = ([p.detach().clone() for p in m.parameters()] for m in (a, b, c))
    assert all(torch.equal(x, y) for x, y in zip(pa, pb))
    assert not all(torch.equal(x, y) for x, y in zip(pa, pc))
    assert [int(z) for z in a.atomic_numbers] == [6, 7] and float(a.r_max) == 5.5
    assert str(a.interactions[0].hidden_irreps) == "8x0e+8x1o"
    potential = MacePotential(a)
    assert potential.cutoff_A == 5.5 and potential.n_interactions == 2
    e0 = a.atomic_energies_fn.atomic_energies.detach().reshape(-1).tolist()
    assert e0 == [-10.0, -20.0]
    with pytest.raises(ValueError, match="lacks elements"):
        build_mace(["C", "N"], atomic_energies_eV={"C": -1.0})


def test_a_stage_added_later_joins_an_existing_manifest_but_changed_settings_do_not(script, tmp_path):
    md, _ = script
    pipeline = md.pipeline_from_args(md.build_parser().parse_args(["--out", str(tmp_path)]))
    fixed = pipeline.fixed()
    older = {k: v for k, v in fixed.items() if k != "wide"}  # a manifest written before the wide stage existed
    manifest = {"fixed": older}
    md.check_fixed(manifest, pipeline)
    assert manifest["fixed"]["wide"] == fixed["wide"]
    pipeline.wide_spacing_range_A = (4.0, 9.0)
    with pytest.raises(ValueError, match="made with other wide settings"):
        md.check_fixed(manifest, pipeline)


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_smoke_pipeline_runs_every_stage(script, tmp_path):
    """make_dataset.py --smoke: seed labels, preliminary model, MD exploration, wide frames, base model."""
    import json

    md, _ = script
    assert md.main(["--smoke", "--out", str(tmp_path), "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    split = json.loads((tmp_path / "split.json").read_text())
    assert {"seed", "explore", "wide"} <= set(manifest.get("stages", manifest))
    assert sum(len(v) for v in split.values() if isinstance(v, list)) > 0
