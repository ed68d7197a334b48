"""DeepmdPotential against DeePMD-kit's own DeepPot, finite differences, and deepmd's file formats.

A tiny se_e2_a model (type_map H, O; rcut 4 Å, embedding [4, 8], fitting [8, 8]) is built in
float64 with deepmd's ``get_model``, given random weights and realistic statistics, and saved
as ``dp --pt train`` saves checkpoints; ``dp --pt freeze`` code makes the frozen ``.pth`` that
``deepmd.infer.DeepPot`` evaluates as the reference. One test runs ``dp --pt train`` itself for
two steps to check a genuine checkpoint.

deepmd-kit is not pip-installable with torch 2.13 (its wheel is built for torch 2.11): these tests
run after ``bash scripts/install_deepmd.sh`` and are skipped without it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("deepmd.pt")

# deepmd's TorchScript freeze (torch.jit is deprecated in torch 2.13) and its inference notes
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.jit"),
    pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning"),
]

from ase import Atoms  # noqa: E402

from conftest import one_thread, refine_lj_with_correction  # noqa: E402
from exprefine.potentials.deepmd import DeepmdPotential, import_deepmd  # noqa: E402
from exprefine.state import concatenate, from_atoms  # noqa: E402
from exprefine.testing.checks import check_gradient_wrt_parameters  # noqa: E402

import_deepmd()  # before any other deepmd.pt module: it imports e3nn 0.4.4 in a way torch 2.13 accepts

TYPE_MAP = ["H", "O"]
RCUT_A = 4.0
ENERGY_TOL_eV = 1e-6
FORCE_TOL_eV_PER_A = 1e-5
STRESS_TOL_eV_PER_A3 = 1e-7
MODEL_PARAMS = {
    "type_map": TYPE_MAP,
    "descriptor": {"type": "se_e2_a", "sel": [24, 24], "rcut_smth": 0.5, "rcut": RCUT_A, "neuron": [4, 8],
                   "axis_neuron": 4, "seed": 1},
    "fitting_net": {"neuron": [8, 8], "resnet_dt": True, "seed": 2},
}


# ------------------------------------------------------------------ fixtures
def build_tiny_model(params: dict = MODEL_PARAMS, seed: int = 0) -> torch.nn.Module:
    """A deepmd se_e2_a EnergyModel with random weights and statistics of the kind training sets.

    The environment-matrix statistics are what deepmd's data statistics give: a mean only on
    the radial component and one standard deviation shared by the x, y, z components (anything
    else breaks rotational invariance). The per-type energy bias is that of a real model.
    """
    import_deepmd()
    from deepmd.pt.model.model import get_model

    model = get_model(copy.deepcopy(params))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        sea = model.atomic_model.descriptor.sea
        n_types, n_slots, _ = sea.mean.shape
        sea.mean.zero_()
        sea.mean[:, :, 0] = 0.1 + 0.05 * torch.rand(n_types, 1, generator=g, dtype=sea.mean.dtype)
        std_r = 0.2 + 0.1 * torch.rand(n_types, 1, generator=g, dtype=sea.stddev.dtype)
        std_a = 0.1 + 0.1 * torch.rand(n_types, 1, generator=g, dtype=sea.stddev.dtype)
        sea.stddev[:, :, 0] = std_r
        sea.stddev[:, :, 1:] = std_a[:, :, None]
        bias = torch.tensor([-3.2, -5.1, -4.0][:n_types], dtype=model.atomic_model.out_bias.dtype)
        model.atomic_model.out_bias.copy_(bias.reshape(1, n_types, 1))
    return model


def save_like_dp_train(model: torch.nn.Module, params: dict, path) -> None:
    """Write ``{"model": ModelWrapper state dict, "optimizer": ...}`` as ``dp --pt train`` does."""
    from deepmd.pt.train.wrapper import ModelWrapper

    wrapper = ModelWrapper(model, model_params=copy.deepcopy(params))
    wrapper.train_infos = {"lr": 1e-3, "step": 1000}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    torch.save({"model": wrapper.state_dict(), "optimizer": optimizer.state_dict()}, str(path))


def spread_positions(rng: np.random.Generator, n: int, cell: np.ndarray, min_dist_A: float) -> np.ndarray:
    """Random positions in the cell with all periodic distances above ``min_dist_A``."""
    points: list[np.ndarray] = []
    while len(points) < n:
        cand = rng.uniform(size=3) @ cell
        ok = True
        for p in points:
            frac = np.linalg.solve(cell.T, cand - p)
            if np.linalg.norm((frac - np.round(frac)) @ cell) < min_dist_A:
                ok = False
                break
        if ok:
            points.append(cand)
    return np.array(points)


def triclinic_frame(seed: int = 1) -> Atoms:
    """12 atoms of H and O in a triclinic periodic cell."""
    rng = np.random.default_rng(seed)
    cell = np.array([[6.2, 0.0, 0.0], [1.1, 5.9, 0.0], [-0.7, 0.9, 6.4]])
    symbols = "OOOOHHHHHHHH"
    return Atoms(symbols, positions=spread_positions(rng, len(symbols), cell, 1.0), cell=cell, pbc=True)


def small_cell_frame() -> Atoms:
    """3 atoms in a cell thinner than the cutoff: atoms see their own periodic images."""
    cell = np.array([[3.1, 0.0, 0.0], [0.4, 3.3, 0.0], [0.3, -0.2, 3.6]])
    return Atoms("OHH", scaled_positions=[[0.0, 0.0, 0.0], [0.27, 0.11, 0.12], [0.71, 0.53, 0.38]], cell=cell, pbc=True)


def water_dimer() -> Atoms:
    """A non-periodic, distorted water dimer."""
    atoms = Atoms("OHHOHH", positions=[[0.0, 0.0, 0.0], [0.96, 0.0, 0.0], [-0.24, 0.93, 0.0],
                                       [2.9, 0.1, 0.2], [3.3, 0.9, 0.4], [3.4, -0.6, -0.1]])
    atoms.positions += np.random.default_rng(3).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def frames() -> list[Atoms]:
    return [triclinic_frame(1), small_cell_frame(), water_dimer(), triclinic_frame(2)]


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    """(checkpoint .pt, frozen .pth) of the tiny model."""
    from deepmd.pt.entrypoints.main import freeze

    with one_thread():
        folder = tmp_path_factory.mktemp("deepmd")
        ckpt = folder / "model.ckpt.pt"
        save_like_dp_train(build_tiny_model(), MODEL_PARAMS, ckpt)
        freeze(model=str(ckpt), output=str(folder / "frozen.pth"))
    return ckpt, folder / "frozen.pth"


@pytest.fixture(scope="module")
def deep_pot(model_files):
    from deepmd.infer import DeepPot

    with one_thread():
        return DeepPot(str(model_files[1]))


def deeppot_reference(dp, atoms: Atoms) -> dict[str, np.ndarray]:
    """Energy, forces and (periodic) stress −W/V from DeepPot on one frame."""
    type_of = {s: k for k, s in enumerate(dp.get_type_map())}
    types = np.array([type_of[s] for s in atoms.get_chemical_symbols()])
    periodic = bool(atoms.pbc.all())
    cell = atoms.cell.array.reshape(1, 9) if periodic else None
    e, f, v = dp.eval(atoms.positions.reshape(1, -1), cell, types, atomic=False)
    out = {"energy": np.asarray(e).reshape(()), "forces": np.asarray(f)[0]}
    if periodic:
        out["stress"] = -np.asarray(v)[0].reshape(3, 3) / atoms.get_volume()
    return out


def perturb(potential: DeepmdPotential, scale: float = 0.05, seed: int = 5) -> None:
    """Change every trainable parameter a little (stands for a refinement step)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in potential.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def compare_with_deeppot(pot: DeepmdPotential, dp, atoms_list) -> dict[str, float]:
    worst = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
    for atoms in atoms_list:
        ref = deeppot_reference(dp, atoms)
        periodic = bool(atoms.pbc.all())
        out = pot.compute(from_atoms(atoms), forces=True, stress=periodic)
        assert float(out.forces_eV_per_A.abs().max()) > 1e-2  # a non-trivial frame
        worst["energy"] = max(worst["energy"], abs(float(out.energy_eV[0]) - float(ref["energy"])))
        worst["forces"] = max(worst["forces"], float(np.abs(out.forces_eV_per_A.numpy() - ref["forces"]).max()))
        if periodic:
            worst["stress"] = max(worst["stress"], float(np.abs(out.stress_eV_per_A3[0].numpy() - ref["stress"]).max()))
    return worst


# ---------------------------------------------------------------------- tests
def test_matches_deeppot_energy_forces_virial(model_files, deep_pot):
    pot = DeepmdPotential.from_checkpoint(model_files[0])
    assert pot.type_map == TYPE_MAP and pot.species_numbers == [1, 8] and pot.cutoff_A == RCUT_A
    worst = compare_with_deeppot(pot, deep_pot, frames())
    print(f"max |ΔE| {worst['energy']:.2e} eV, max |ΔF| {worst['forces']:.2e} eV/Å, "
          f"max |Δσ| {worst['stress']:.2e} eV/Å³ (σ = −W/V from DeepPot's virial)")
    assert worst["energy"] < ENERGY_TOL_eV
    assert worst["forces"] < FORCE_TOL_eV_PER_A
    assert worst["stress"] < STRESS_TOL_eV_PER_A3


def test_from_frozen_equals_checkpoint(model_files):
    from_ckpt = DeepmdPotential.from_checkpoint(model_files[0], trainable="fitting")
    from_pth = DeepmdPotential.from_frozen(model_files[1], trainable="fitting")
    assert from_pth.trainable_parameter_names() == from_ckpt.trainable_parameter_names()
    assert from_ckpt.train_infos == {"lr": 1e-3, "step": 1000}
    state = concatenate([from_atoms(a) for a in frames()])
    assert torch.equal(from_pth.energy(state), from_ckpt.energy(state))
    # frozen parameters are trainable after loading: the energy has parameter gradients
    grads = torch.autograd.grad(from_pth.energy(state).sum(), [p for p in from_pth.parameters() if p.requires_grad])
    assert all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    assert max(float(g.abs().max()) for g in grads) > 0


def test_batch_equals_one_by_one(model_files):
    pot = DeepmdPotential.from_checkpoint(model_files[0])
    states = [from_atoms(a) for a in frames()]  # frames 0 and 3 have 12 atoms: one deepmd call
    singles = [pot.compute(s, forces=True) for s in states]
    e_single = torch.cat([o.energy_eV for o in singles])
    f_single = torch.cat([o.forces_eV_per_A for o in singles])
    worst_e = worst_f = 0.0
    for max_atoms in (4096, 12):  # 12: every frame in its own call
        pot.max_atoms_per_call = max_atoms
        batch = pot.compute(concatenate(states), forces=True)
        worst_e = max(worst_e, float((batch.energy_eV - e_single).abs().max()))
        worst_f = max(worst_f, float((batch.forces_eV_per_A - f_single).abs().max()))
    print(f"batch vs one by one: max |ΔE| {worst_e:.2e} eV, max |ΔF| {worst_f:.2e} eV/Å")
    assert worst_e < 1e-10 and worst_f < 1e-10


def test_gradient_wrt_trainable_parameters_matches_finite_differences(model_files):
    pot = DeepmdPotential.from_checkpoint(model_files[0], trainable=["fitting", "re:networks\\.1\\.layers\\.1\\."])
    names = pot.trainable_parameter_names()
    assert any("descriptor" in n for n in names) and any("fitting_net" in n for n in names)
    report = check_gradient_wrt_parameters(pot, from_atoms(triclinic_frame()), max_entries_per_parameter=3)
    print(f"{report.n_entries_checked} entries; max error "
          f"{max(report.max_error_by_parameter.values()):.2e} eV per unit θ")
    assert set(report.max_error_by_parameter) == {f"model.{n}" for n in names}


def test_frozen_parameters_stay_bit_identical(model_files):
    pot = DeepmdPotential.from_checkpoint(model_files[0], trainable="fitting_last_layer")
    names = pot.trainable_parameter_names()
    assert names == [f"atomic_model.fitting_net.filter_layers.networks.{t}.layers.2.{w}"
                     for t in (0, 1) for w in ("matrix", "bias")]
    frozen_before = {n: p.detach().clone() for n, p in pot.model.named_parameters() if n not in names}
    trained_before = {n: p.detach().clone() for n, p in pot.model.named_parameters() if n in names}
    buffers_before = {n: b.detach().clone() for n, b in pot.model.named_buffers()}
    state = from_atoms(triclinic_frame())
    opt = torch.optim.Adam([p for p in pot.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        out = pot.compute(state, forces=True, create_graph=True)
        (out.energy_eV.sum() ** 2 + (out.forces_eV_per_A ** 2).sum()).backward()
        opt.step()
    for n, p in pot.model.named_parameters():
        if n in names:
            assert not torch.equal(p, trained_before[n]), n
        else:
            assert not p.requires_grad and p.grad is None, n
            assert torch.equal(p, frozen_before[n]), n
    for n, b in pot.model.named_buffers():
        assert torch.equal(b, buffers_before[n]), n


def test_refined_checkpoint_freezes_and_deeppot_reproduces_it(model_files, tmp_path):
    from deepmd.infer import DeepPot

    pot = DeepmdPotential.from_checkpoint(model_files[0], trainable=["fitting", "descriptor"])
    perturb(pot)
    ckpt = pot.save_checkpoint(tmp_path / "refined.pt")
    saved = torch.load(str(ckpt), map_location="cpu", weights_only=True)
    assert saved["model"]["_extra_state"]["model_params"] == MODEL_PARAMS
    assert saved["model"]["_extra_state"]["train_infos"] == {"lr": 1e-3, "step": 1000}
    assert all(k.startswith("model.Default.") for k in saved["model"] if k != "_extra_state")
    pth = pot.freeze(tmp_path / "refined.pth")
    assert pth == tmp_path / "refined.pth"
    worst = compare_with_deeppot(pot, DeepPot(str(pth)), frames())
    print(f"refined model frozen and reloaded by DeepPot: max |ΔE| {worst['energy']:.2e} eV, "
          f"max |ΔF| {worst['forces']:.2e} eV/Å, max |Δσ| {worst['stress']:.2e} eV/Å³")
    assert worst["energy"] < ENERGY_TOL_eV and worst["forces"] < FORCE_TOL_eV_PER_A
    assert worst["stress"] < STRESS_TOL_eV_PER_A3
    # DeepPot also reads the checkpoint itself
    worst_ckpt = compare_with_deeppot(pot, DeepPot(str(ckpt)), frames()[:1])
    assert worst_ckpt["energy"] < ENERGY_TOL_eV and worst_ckpt["forces"] < FORCE_TOL_eV_PER_A
    # the refined parameters were saved: the original model gives other energies
    state = from_atoms(triclinic_frame())
    original = DeepmdPotential.from_checkpoint(model_files[0])
    assert abs(float(original.energy(state)[0].detach() - pot.energy(state)[0].detach())) > 1e-3
    again = DeepmdPotential.from_checkpoint(ckpt, trainable="none")
    assert torch.equal(again.energy(state), pot.energy(state)) and again.trainable_parameter_names() == []


def test_float32_model_is_refined_in_float64_and_saved_in_float32(tmp_path):
    params = copy.deepcopy(MODEL_PARAMS)
    params["descriptor"]["precision"] = "float32"
    params["fitting_net"]["precision"] = "float32"
    ckpt = tmp_path / "f32.pt"
    save_like_dp_train(build_tiny_model(params), params, ckpt)
    pot = DeepmdPotential.from_checkpoint(ckpt)
    assert {p.dtype for p in pot.parameters()} == {torch.float64}
    native = DeepmdPotential.from_checkpoint(ckpt, dtype=None)
    assert {p.dtype for p in native.parameters() if p.numel()} == {torch.float32}
    state = from_atoms(triclinic_frame())
    with torch.no_grad():
        e64, e32 = float(pot.energy(state)[0]), float(native.energy(state)[0])
    print(f"float64 vs float32 networks: ΔE {e64 - e32:.2e} eV")
    assert abs(e64 - e32) < 1e-3 * max(1.0, abs(e64))
    # .to(dtype), as SumPotential.to in the builders does, leaves the networks' precision alone
    assert pot.to(torch.float32) is pot and {p.dtype for p in pot.parameters()} == {torch.float64}
    saved = torch.load(str(pot.save_checkpoint(tmp_path / "out.pt")), weights_only=True)["model"]
    assert saved["_extra_state"]["model_params"] == params
    assert {v.dtype for k, v in saved.items() if k.endswith(".matrix")} == {torch.float32}


def test_unknown_element_and_other_clear_errors(model_files):
    pot = DeepmdPotential.from_checkpoint(model_files[0], trainable="none")
    argon = from_atoms(Atoms("OHAr", positions=[[0, 0, 0], [0.96, 0, 0], [0, 2.5, 0]]))
    with pytest.raises(ValueError) as info:
        pot.energy(argon)
    message = str(info.value)
    print(message)
    assert "Ar" in message and "['H', 'O']" in message and "\n" not in message
    slab = triclinic_frame()
    slab.pbc = [True, True, False]
    with pytest.raises(ValueError, match="periodic in all three directions or in none"):
        pot.energy(from_atoms(slab))
    with pytest.raises(ValueError, match="matches no parameter"):
        pot.set_trainable(["fittnig"])
    with pytest.raises(ValueError, match="matches no parameter"):
        pot.set_trainable("type_embedding")  # se_e2_a has none
    with pytest.raises(FileNotFoundError):
        DeepmdPotential.from_checkpoint(model_files[0].parent / "missing.pt")
    with pytest.raises(ValueError, match="not an element symbol"):
        DeepmdPotential({**MODEL_PARAMS, "type_map": ["A", "B"]})
    renamed = DeepmdPotential({**MODEL_PARAMS, "type_map": ["A", "B"]}, elements=["C", "N"])
    assert renamed.species_numbers == [6, 7]


def test_checkpoint_written_by_dp_train(tmp_path):
    """``dp --pt train`` for 2 steps on data written by exprefine; the adapter matches DeepPot on it."""
    from deepmd.infer import DeepPot

    from exprefine.data.deepmd import write_deepmd
    from exprefine.data.dft import DFTDataset

    rng = np.random.default_rng(0)
    atoms_list = [triclinic_frame(seed) for seed in (11, 12, 13)]
    n = len(atoms_list[0])
    data = DFTDataset(
        positions_A=np.concatenate([a.positions for a in atoms_list]),
        atomic_numbers=np.concatenate([a.numbers for a in atoms_list]),
        atoms_per_frame=[n] * len(atoms_list),
        cells_A=np.stack([a.cell.array for a in atoms_list]),
        pbc=np.ones((len(atoms_list), 3), dtype=bool),
        energies_eV=rng.normal(size=len(atoms_list)) - 50.0,
        forces_eV_per_A=rng.normal(size=(n * len(atoms_list), 3)),
        stress_eV_per_A3=np.zeros((len(atoms_list), 3, 3)),
        has_stress=np.zeros(len(atoms_list), dtype=bool),
    )
    (system,) = write_deepmd(data, tmp_path / "data")
    config = {
        "model": copy.deepcopy(MODEL_PARAMS),
        "learning_rate": {"type": "exp", "start_lr": 1e-3, "stop_lr": 1e-4, "decay_steps": 1},
        "loss": {"type": "ener", "start_pref_e": 1, "limit_pref_e": 1, "start_pref_f": 1, "limit_pref_f": 1},
        "training": {"training_data": {"systems": [str(system)], "batch_size": 1}, "numb_steps": 2, "seed": 1,
                     "disp_freq": 1, "save_freq": 2},
    }
    (tmp_path / "input.json").write_text(json.dumps(config))
    # the dp command imports e3nn 0.4.4 (mace-torch's pin), which torch ≥ 2.6 loads only with this variable
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "OMP_NUM_THREADS": "1",
           "DP_INTRA_OP_PARALLELISM_THREADS": "1", "DP_INTER_OP_PARALLELISM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "deepmd", "--pt", "train", "input.json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    ckpt = tmp_path / "model.ckpt.pt"
    pot = DeepmdPotential.from_checkpoint(ckpt, trainable="fitting")
    assert pot.train_infos["step"] >= 1
    worst = compare_with_deeppot(pot, DeepPot(str(ckpt)), frames()[:3])
    print(f"dp --pt train checkpoint: max |ΔE| {worst['energy']:.2e} eV, max |ΔF| {worst['forces']:.2e} eV/Å, "
          f"max |Δσ| {worst['stress']:.2e} eV/Å³")
    assert worst["energy"] < ENERGY_TOL_eV and worst["forces"] < FORCE_TOL_eV_PER_A
    assert worst["stress"] < STRESS_TOL_eV_PER_A3


def test_config_builds_a_deepmd_term_and_writes_checkpoint_and_frozen_model(model_files, tmp_path):
    """``kind: deepmd`` in a YAML config; after a run the checkpoint and .pth are written and reload."""
    import yaml
    from ase.io import write as ase_write
    from deepmd.infer import DeepPot

    from exprefine.builders import build_potential, save_native_models
    from exprefine.config import load_config

    atoms = triclinic_frame()
    ase_write(tmp_path / "start.extxyz", atoms)
    raw = {
        "run_dir": "run",
        "system": {"structure_file": "start.extxyz"},
        "potential": {"terms": [{"kind": "deepmd", "checkpoint_file": str(model_files[0]),
                                 "trainable": ["fitting"]}]},
        "sampling": {"temperature_K": 300.0, "timestep_fs": 0.5, "equilibration_ps": 0.0, "production_ps": 0.01,
                     "frame_interval_fs": 5.0},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "c.yaml")
    potential = build_potential(cfg)
    state = from_atoms(atoms)
    direct = DeepmdPotential.from_checkpoint(model_files[0])
    energy = float(potential.energy(state)[0].detach())
    assert energy == pytest.approx(float(direct.energy(state)[0].detach()), abs=ENERGY_TOL_eV)
    (term,) = potential.terms
    assert term.trainable_parameter_names() and all("fitting_net" in n for n in term.trainable_parameter_names())
    perturb(term)
    ckpt, pth = save_native_models(cfg, potential)
    assert (ckpt, pth) == (tmp_path / "run" / "refined_deepmd.pt", tmp_path / "run" / "refined_deepmd.pth")
    again = DeepmdPotential.from_checkpoint(ckpt)
    refined = float(potential.energy(state)[0].detach())
    assert float(again.energy(state)[0].detach()) == pytest.approx(refined, abs=ENERGY_TOL_eV)
    ref = deeppot_reference(DeepPot(str(pth)), atoms)
    assert float(ref["energy"]) == pytest.approx(refined, abs=ENERGY_TOL_eV)


def _argon_deepmd_correction(seed: int = 4) -> DeepmdPotential:
    """A tiny random se_e2_a model for Ar whose energies vary by a few meV per atom: a learnable correction."""
    params = copy.deepcopy(MODEL_PARAMS)
    params["type_map"] = ["Ar"]
    params["descriptor"]["sel"] = [40]
    model = build_tiny_model(params, seed=seed)
    with torch.no_grad():
        last = [p for n, p in model.named_parameters() if "fitting_net" in n and "matrix" in n][-1]
        last.mul_(0.02)
        model.atomic_model.out_bias.zero_()
    return DeepmdPotential(params, model.state_dict(), trainable="fitting")


def test_refinement_with_a_deepmd_term_lowers_the_loss(argon_108_trajectory):
    """LJ (σ 3 % too large, frozen) + a DeePMD correction (fitting net trainable): Adam updates on the
    reweighted trajectory lower the g(r) loss by > 10 %; the frozen descriptor stays bit-identical."""
    with one_thread():
        correction = _argon_deepmd_correction()
        assert all("descriptor" in n for n, p in correction.named_parameters() if not p.requires_grad)
        history = refine_lj_with_correction(argon_108_trajectory, correction, learning_rate=0.05)
    print("losses", [r.loss for r in history], "ESS", [r.ess_fraction for r in history])
    assert not any(r.resampled for r in history)  # the same frames throughout: a paired comparison
    assert history[-1].loss < 0.9 * history[0].loss, [r.loss for r in history]
