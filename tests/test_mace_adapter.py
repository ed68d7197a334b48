"""MacePotential against MACE's own calculator, finite differences, and the exprefine sampler.

A small ScaleShiftMACE (H, C, N, O; 8 channels, L ≤ 1, r_max 4.5 Å, 2 interactions) is built
in float64 with random weights; MACECalculator on a saved copy is the reference.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

pytest.importorskip("mace")

# warnings of mace-torch and e3nn themselves (TorchScript at model build, its calculator's torch.load)
pytestmark = [
    pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning"),
    pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD:UserWarning"),
]

from ase import Atoms  # noqa: E402
from ase.build import molecule  # noqa: E402

from conftest import refine_lj_with_correction  # noqa: E402
from exprefine.potentials.mace import MacePotential, import_mace  # noqa: E402
from exprefine.state import concatenate, from_atoms  # noqa: E402
from exprefine.testing.checks import check_gradient_wrt_parameters  # noqa: E402

ELEMENTS = [1, 6, 7, 8]
R_MAX_A = 4.5
ENERGY_TOL_eV = 1e-6
FORCE_TOL_eV_PER_A = 1e-5
STRESS_TOL_eV_PER_A3 = 1e-7


# ------------------------------------------------------------------ fixtures
def build_small_mace(seed: int = 0) -> torch.nn.Module:
    """A random ScaleShiftMACE in float64 (default dtype restored afterwards)."""
    import_mace()
    from e3nn import o3
    from mace import modules

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(seed)
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        model = modules.ScaleShiftMACE(
            r_max=R_MAX_A,
            num_bessel=6,
            num_polynomial_cutoff=5,
            max_ell=2,
            interaction_cls=block,
            interaction_cls_first=block,
            num_interactions=2,
            num_elements=len(ELEMENTS),
            hidden_irreps=o3.Irreps("8x0e+8x1o"),
            MLP_irreps=o3.Irreps("8x0e"),
            gate=torch.nn.functional.silu,
            atomic_energies=np.array([-13.6, -1030.0, -1480.0, -2040.0]),
            avg_num_neighbors=8.0,
            atomic_numbers=ELEMENTS,
            correlation=2,
            radial_type="bessel",
            atomic_inter_scale=1.7,
            atomic_inter_shift=0.05,
        )
    finally:
        torch.set_default_dtype(old)
    return model


def spread_positions(rng: np.random.Generator, n: int, cell: np.ndarray, min_dist_A: float) -> np.ndarray:
    """Random fractional positions with all periodic distances above ``min_dist_A``."""
    points: list[np.ndarray] = []
    while len(points) < n:
        cand = rng.uniform(size=3) @ cell
        ok = True
        for p in points:
            d = cand - p
            frac = np.linalg.solve(cell.T, d)
            d = (frac - np.round(frac)) @ cell
            if np.linalg.norm(d) < min_dist_A:
                ok = False
                break
        if ok:
            points.append(cand)
    return np.array(points)


def triclinic_frame(seed: int = 1) -> Atoms:
    """12 atoms of H, C, N, O in a triclinic periodic cell."""
    rng = np.random.default_rng(seed)
    cell = np.array([[6.2, 0.0, 0.0], [1.1, 5.9, 0.0], [-0.7, 0.9, 6.4]])
    symbols = "CCCNNOOHHHHH"
    return Atoms(symbols, positions=spread_positions(rng, len(symbols), cell, 1.0), cell=cell, pbc=True)


def small_cell_frame() -> Atoms:
    """3 atoms in a cell thinner than r_max: atoms see their own periodic images."""
    cell = np.array([[3.1, 0.0, 0.0], [0.4, 3.3, 0.0], [0.3, -0.2, 3.6]])
    return Atoms("CNO", scaled_positions=[[0.0, 0.0, 0.0], [0.37, 0.41, 0.52], [0.71, 0.13, 0.28]], cell=cell, pbc=True)


def free_molecule() -> Atoms:
    """A non-periodic, slightly distorted molecule."""
    atoms = molecule("CH3CH2OH")
    atoms.positions += np.random.default_rng(3).normal(scale=0.05, size=atoms.positions.shape)
    return atoms


def slab_frame() -> Atoms:
    """Periodic in a and b only (mixed periodicity)."""
    atoms = triclinic_frame(seed=7)
    atoms.pbc = [True, True, False]
    return atoms


def frames() -> list[Atoms]:
    return [triclinic_frame(), small_cell_frame(), free_molecule(), slab_frame()]


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return build_small_mace()


@pytest.fixture(scope="module")
def model_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("mace") / "small.model"
    torch.save(model, str(path))
    return path


def mace_calculator(path):
    from mace.calculators import MACECalculator

    return MACECalculator(model_paths=str(path), device="cpu", default_dtype="float64")


def reference(calc, atoms: Atoms) -> dict[str, np.ndarray]:
    """Energy, forces and (periodic frames) full 3×3 stress from MACECalculator."""
    atoms = atoms.copy()
    atoms.calc = calc
    out = {"energy": np.array(atoms.get_potential_energy()), "forces": atoms.get_forces()}
    if atoms.pbc.all():
        out["stress"] = atoms.get_stress(voigt=False)
    return out


def perturb(potential: MacePotential, scale: float = 0.05, seed: int = 5) -> None:
    """Change every trainable parameter a little (stands for a refinement step)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in potential.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


# ---------------------------------------------------------------------- tests
def test_matches_mace_calculator_energy_forces_stress(model, model_file):
    pot = MacePotential(copy.deepcopy(model))
    calc = mace_calculator(model_file)
    worst = {"energy": 0.0, "forces": 0.0, "stress": 0.0}
    for atoms in frames():
        ref = reference(calc, atoms)
        periodic = bool(atoms.pbc.all())
        out = pot.compute(from_atoms(atoms), forces=True, stress=periodic)
        assert float(out.forces_eV_per_A.abs().max()) > 1e-3  # a non-trivial frame
        worst["energy"] = max(worst["energy"], abs(float(out.energy_eV[0]) - float(ref["energy"])))
        worst["forces"] = max(worst["forces"], float(np.abs(out.forces_eV_per_A.numpy() - ref["forces"]).max()))
        if periodic:
            worst["stress"] = max(worst["stress"], float(np.abs(out.stress_eV_per_A3[0].numpy() - ref["stress"]).max()))
    print(f"max |ΔE| {worst['energy']:.2e} eV, max |ΔF| {worst['forces']:.2e} eV/Å, "
          f"max |Δσ| {worst['stress']:.2e} eV/Å³")
    assert worst["energy"] < ENERGY_TOL_eV
    assert worst["forces"] < FORCE_TOL_eV_PER_A
    assert worst["stress"] < STRESS_TOL_eV_PER_A3


def test_batch_equals_one_by_one(model):
    pot = MacePotential(copy.deepcopy(model))
    states = [from_atoms(a) for a in frames()]
    batch = pot.compute(concatenate(states), forces=True)
    singles = [pot.compute(s, forces=True) for s in states]
    de = float((batch.energy_eV - torch.cat([o.energy_eV for o in singles])).abs().max())
    df = float((batch.forces_eV_per_A - torch.cat([o.forces_eV_per_A for o in singles])).abs().max())
    print(f"batch vs one by one: max |ΔE| {de:.2e} eV, max |ΔF| {df:.2e} eV/Å")
    assert de < 1e-10 and df < 1e-10


def test_gradient_wrt_trainable_parameters_matches_finite_differences(model):
    # the atomic reference energies (≈ −1e4 eV per frame) do not depend on θ; zeroed here so that
    # rounding of the total energy does not swamp the finite differences
    no_e0 = copy.deepcopy(model)
    no_e0.atomic_energies_fn.atomic_energies.zero_()
    pot = MacePotential(no_e0, trainable=["readouts", "last_interaction"])
    perturb(pot)
    report = check_gradient_wrt_parameters(pot, from_atoms(triclinic_frame()), max_entries_per_parameter=3)
    print(f"{report.n_entries_checked} entries; max error "
          f"{max(report.max_error_by_parameter.values()):.2e} eV per unit θ")
    assert all(name.startswith(("model.readouts", "model.interactions.1", "model.products.1"))
               for name in report.max_error_by_parameter)


def test_frozen_parameters_stay_bit_identical(model):
    pot = MacePotential(copy.deepcopy(model), trainable="readouts")
    names = pot.trainable_parameter_names()
    assert names and all("readouts" in n for n in names)
    frozen_before = {n: p.detach().clone() for n, p in pot.model.named_parameters() if n not in names}
    trained_before = {n: p.detach().clone() for n, p in pot.model.named_parameters() if n in names}
    state = from_atoms(triclinic_frame())
    opt = torch.optim.Adam([p for p in pot.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        opt.zero_grad()
        (pot.energy(state).sum() ** 2).backward()
        opt.step()
    for n, p in pot.model.named_parameters():
        if n in names:
            assert not torch.equal(p, trained_before[n]), n
        else:
            assert not p.requires_grad and p.grad is None, n
            assert torch.equal(p, frozen_before[n]), n


def test_save_model_reloads_in_mace_calculator(model, tmp_path):
    pot = MacePotential(copy.deepcopy(model), trainable=["readouts", "re:conv_tp_weights"])
    perturb(pot)
    path = pot.save_model(tmp_path / "refined.model")
    saved = torch.load(str(path), weights_only=False)
    assert all(p.requires_grad and p.dtype == torch.float64 for p in saved.parameters())
    # the potential itself is unchanged by saving
    assert pot.trainable_parameter_names() == [n for n, p in pot.model.named_parameters() if p.requires_grad]
    calc = mace_calculator(path)
    worst_e = worst_f = 0.0
    for atoms in frames():
        ref = reference(calc, atoms)
        out = pot.compute(from_atoms(atoms), forces=True)
        worst_e = max(worst_e, abs(float(out.energy_eV[0]) - float(ref["energy"])))
        worst_f = max(worst_f, float(np.abs(out.forces_eV_per_A.numpy() - ref["forces"]).max()))
    print(f"refined model reloaded by MACECalculator: max |ΔE| {worst_e:.2e} eV, max |ΔF| {worst_f:.2e} eV/Å")
    assert worst_e < ENERGY_TOL_eV and worst_f < FORCE_TOL_eV_PER_A
    # the unrefined model gives different energies: the refined parameters were saved
    original = MacePotential(copy.deepcopy(model))
    state = from_atoms(triclinic_frame())
    assert abs(float(original.energy(state)[0].detach() - pot.energy(state)[0].detach())) > 1e-3
    # and exprefine reads it back with the patterns it is given
    again = MacePotential.from_file(path, trainable="readouts")
    assert torch.equal(again.energy(state), pot.energy(state))
    assert again.trainable_parameter_names() == [n for n, _ in again.model.named_parameters() if "readouts" in n]


def test_refined_model_goes_through_mace_lammps_export(model, tmp_path):
    """MACE's own LAMMPS export (``mace.cli.create_lammps_model``) compiles the refined file, and the
    TorchScript model it writes for ``pair_style mace`` carries the refined weights."""
    import subprocess
    import sys

    pot = MacePotential(copy.deepcopy(model), trainable="readouts")
    perturb(pot)
    path = pot.save_model(tmp_path / "refined.model")
    done = subprocess.run([sys.executable, "-m", "mace.cli.create_lammps_model", str(path), "--dtype", "float64"],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    exported = torch.jit.load(str(path) + "-lammps.pt")
    weights = dict(exported.named_parameters())
    refined = {n: p for n, p in pot.model.named_parameters() if "readouts" in n}
    assert refined
    for name, value in refined.items():
        assert torch.equal(weights["model." + name].detach(), value.detach().to(weights["model." + name].dtype)), name
    original = dict(MacePotential(copy.deepcopy(model)).model.named_parameters())
    assert any(not torch.equal(original[n].detach(), v.detach()) for n, v in refined.items())


def test_save_model_keeps_original_dtype(model, tmp_path):
    pot = MacePotential(copy.deepcopy(model).float())
    assert pot.original_dtype == torch.float32 and pot.model_dtype == torch.float64
    saved = torch.load(str(pot.save_model(tmp_path / "f32.model")), weights_only=False)
    assert {p.dtype for p in saved.parameters()} == {torch.float32}
    saved = torch.load(str(pot.save_model(tmp_path / "f64.model", dtype=torch.float64)), weights_only=False)
    assert {p.dtype for p in saved.parameters()} == {torch.float64}


def test_from_file_and_unknown_element_error(model_file):
    pot = MacePotential.from_file(model_file, trainable="none")
    assert pot.trainable_parameter_names() == []
    assert math.isclose(pot.cutoff_A, R_MAX_A)
    argon = from_atoms(Atoms("COAr", positions=[[0, 0, 0], [1.2, 0, 0], [0, 2.5, 0]]))
    with pytest.raises(ValueError) as info:
        pot.energy(argon)
    message = str(info.value)
    print(message)
    assert "Ar" in message and "\n" not in message
    with pytest.raises(ValueError, match="matches no parameter"):
        pot.set_trainable(["readoutz"])
    with pytest.raises(FileNotFoundError):
        MacePotential.from_file(model_file.parent / "missing.model")


def test_config_builds_a_mace_term_and_writes_the_refined_model(model_file, tmp_path):
    """``kind: mace`` in a YAML config gives the same energies; the native file written after a run reloads."""
    import yaml
    from ase.io import write as ase_write

    from exprefine.builders import build_potential, save_native_models
    from exprefine.config import load_config

    atoms = triclinic_frame()
    ase_write(tmp_path / "start.extxyz", atoms)
    raw = {
        "run_dir": "run",
        "system": {"structure_file": "start.extxyz"},
        "potential": {"terms": [{"kind": "mace", "model_file": str(model_file), "trainable": ["readouts"]}]},
        "sampling": {"temperature_K": 300.0, "timestep_fs": 0.5, "equilibration_ps": 0.0, "production_ps": 0.01,
                     "frame_interval_fs": 5.0},
    }
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "c.yaml")
    potential = build_potential(cfg)
    direct = MacePotential.from_file(model_file)
    state = from_atoms(atoms)
    assert float(potential.energy(state)[0].detach()) == pytest.approx(float(direct.energy(state)[0].detach()), abs=ENERGY_TOL_eV)
    (term,) = potential.terms
    assert term.trainable_parameter_names() and all("readouts" in n for n in term.trainable_parameter_names())
    perturb(term)
    (path,) = save_native_models(cfg, potential)
    assert path == tmp_path / "run" / "refined.model"
    again = MacePotential.from_file(path)
    assert float(again.energy(state)[0].detach()) == pytest.approx(float(potential.energy(state)[0].detach()), abs=ENERGY_TOL_eV)
    assert abs(float(again.energy(state)[0].detach()) - float(direct.energy(state)[0].detach())) > 1e-4


def _argon_mace_correction(seed: int = 3) -> torch.nn.Module:
    """A random ScaleShiftMACE for Ar with a small energy scale: a learnable correction to LJ."""
    import_mace()
    from e3nn import o3
    from mace import modules

    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(seed)
        block = modules.interaction_classes["RealAgnosticResidualInteractionBlock"]
        return modules.ScaleShiftMACE(
            r_max=5.0, num_bessel=4, num_polynomial_cutoff=5, max_ell=1, interaction_cls=block,
            interaction_cls_first=block, num_interactions=1, num_elements=1, hidden_irreps=o3.Irreps("4x0e"),
            MLP_irreps=o3.Irreps("4x0e"), gate=torch.nn.functional.silu, atomic_energies=np.array([0.0]),
            avg_num_neighbors=12.0, atomic_numbers=[18], correlation=1, radial_type="bessel",
            atomic_inter_scale=1e-2, atomic_inter_shift=0.0,
        )
    finally:
        torch.set_default_dtype(old)


def test_refinement_with_a_mace_term_lowers_the_loss(argon_108_trajectory):
    """LJ (σ 3 % too large, frozen) + a MACE correction (readouts and radial MLPs trainable): Adam
    updates on the reweighted trajectory lower the g(r) loss by > 10 %; frozen MACE weights stay put.

    (Readouts alone mostly shift every frame's energy alike, which reweighting cannot see.)"""
    mace_term = MacePotential(_argon_mace_correction(), trainable=["readouts", "radial"])
    history = refine_lj_with_correction(argon_108_trajectory, mace_term, learning_rate=0.3)
    assert not any(r.resampled for r in history)  # the same frames throughout: a paired comparison
    assert history[-1].loss < 0.9 * history[0].loss, [r.loss for r in history]
