"""Training against labelled data: the DFT loss gradient, parameter recovery, exact resume, MACE.

Labels are made by a known Lennard-Jones potential, so a fit must find its parameters again.
"""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch
from ase import Atoms

from conftest import EPSILON_TRUE_K, SIGMA_TRUE_A, argon_lattice, argon_lj
from exprefine.data import DFTDataset, evaluate_dft_errors, label_with_potential, split
from exprefine.potentials import LennardJones
from exprefine.training import TrainSettings, dft_loss, dft_loss_terms, train
from exprefine.units import kelvin_to_eV


def argon_frames(n: int, seed: int) -> list[Atoms]:
    """32-atom argon cells, scaled by 0.92–1.05 and rattled by 0.15 Å."""
    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        atoms = argon_lattice(2)
        atoms.set_cell(atoms.cell.array * rng.uniform(0.92, 1.05), scale_atoms=True)
        atoms.positions += rng.normal(scale=0.15, size=atoms.positions.shape)
        frames.append(atoms)
    return frames


def argon_data(n: int, seed: int = 0) -> DFTDataset:
    return label_with_potential(argon_lj(), argon_frames(n, seed))


# --------------------------------------------------------------- loss
def test_dft_loss_gradient_equals_finite_differences():
    truth = LennardJones(["Ar", "Kr"], [3.405, 3.5, 3.6],
                         [kelvin_to_eV(119.8), kelvin_to_eV(140.0), kelvin_to_eV(164.0)], cutoff_A=7.0)
    frames = argon_frames(3, seed=1)
    for atoms in frames:
        atoms.symbols[::3] = "Kr"
    data = label_with_potential(truth, frames)
    batch = data.batch([0, 1, 2])
    model = LennardJones(["Ar", "Kr"], [3.3, 3.6, 3.5],
                         [kelvin_to_eV(110.0), kelvin_to_eV(150.0), kelvin_to_eV(170.0)], cutoff_A=7.0)
    weights = dict(energy_weight=3.0, force_weight=1.0, stress_weight=1e3)

    terms = dft_loss_terms(model, batch, **weights)
    assert terms.stress_mse > 0 and terms.energy_mse > 0 and terms.n_stress_frames == 3
    assert float(terms.total.detach()) == pytest.approx(
        3.0 * float(terms.energy_mse.detach()) + float(terms.force_mse.detach()) + 1e3 * float(terms.stress_mse.detach()),
        rel=1e-14)
    params = [model.log_sigma, model.log_epsilon]
    grads = torch.autograd.grad(terms.total, params)
    h = 1e-5
    for param, grad in zip(params, grads):
        for k in range(param.numel()):
            with torch.no_grad():
                param[k] += h
            up = float(dft_loss(model, batch, **weights).detach())
            with torch.no_grad():
                param[k] -= 2 * h
            down = float(dft_loss(model, batch, **weights).detach())
            with torch.no_grad():
                param[k] += h
            fd = (up - down) / (2 * h)
            assert float(grad[k]) == pytest.approx(fd, rel=1e-6, abs=1e-12)


# ------------------------------------------------------------ training
def test_training_recovers_lennard_jones_parameters():
    data = split(argon_data(20), (0.8, 0.2, 0.0), seed=0)
    model = argon_lj(sigma_A=SIGMA_TRUE_A * 1.1, epsilon_K=EPSILON_TRUE_K * 0.9)
    settings = TrainSettings(epochs=30, batch_size=4, learning_rate=0.02, energy_weight=10.0, patience=5)
    result = train(model, data.train, data.valid, settings, progress=False)

    sigma_error = float(model.sigma_A[0].detach()) / SIGMA_TRUE_A - 1
    epsilon_error = float(model.epsilon_eV[0].detach()) / kelvin_to_eV(EPSILON_TRUE_K) - 1
    assert abs(sigma_error) < 0.005 and abs(epsilon_error) < 0.02, (sigma_error, epsilon_error)
    assert result.best_loss < result.valid_before.weighted_loss(10.0, 1.0) / 100
    assert result.valid_after.force_rmse_meV_per_A < result.valid_before.force_rmse_meV_per_A / 10
    assert len(result.history) == 30 and result.history[result.best_epoch - 1].is_best


def _history_without_times(history):
    return [(r.epoch, r.train_loss, r.valid_loss, r.learning_rate, r.is_best) for r in history]


def start_model() -> LennardJones:
    """Argon LJ 5 % off in σ and ε: the same start for every run of the resume test."""
    return argon_lj(sigma_A=SIGMA_TRUE_A * 1.05, epsilon_K=EPSILON_TRUE_K * 0.95)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    data = split(argon_data(12, seed=3), (8 / 12, 4 / 12, 0.0), seed=1)
    settings = TrainSettings(epochs=6, batch_size=3, learning_rate=0.03, patience=1, lr_factor=0.5, seed=7)

    whole = start_model()
    full = train(whole, data.train, data.valid, settings, run_dir=tmp_path / "whole", progress=False)

    first = start_model()
    # stopped after epoch 2: the plateau schedule has counted one bad epoch and acts after epoch 3
    train(first, data.train, data.valid, replace(settings, epochs=2),
          run_dir=tmp_path / "split", progress=False)
    resumed = start_model()  # a fresh process: nothing but the checkpoint carries over
    part = train(resumed, data.train, data.valid, settings, run_dir=tmp_path / "split", progress=False, resume=True)

    assert _history_without_times(part.history) == _history_without_times(full.history)
    assert len({r.learning_rate for r in full.history}) > 1  # the plateau schedule acted: its state was restored
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    latest = [torch.load(tmp_path / d / "checkpoints" / "train_latest.pt", weights_only=True) for d in ("whole", "split")]
    for name in latest[0]["potential_state"]:
        assert torch.equal(latest[0]["potential_state"][name], latest[1]["potential_state"][name])
    assert latest[1]["optimizer_state"]["state"][0]["step"] == latest[0]["optimizer_state"]["state"][0]["step"]

    with open(tmp_path / "split" / "train_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "split" / "learning_curves.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="changed settings: learning_rate"):
        train(start_model(), data.train, data.valid, replace(settings, learning_rate=0.1),
              run_dir=tmp_path / "split", progress=False, resume=True)


# ---------------------------------------------------------------- MACE
MACE_E0_eV = {1: -13.6, 6: -1030.0, 7: -1480.0, 8: -2040.0}  # the atomic energies of build_small_mace
CN_CELL_A = np.array([[5.0, 0.0, 0.0], [0.6, 4.8, 0.0], [-0.4, 0.5, 5.2]])


def cn_frames_with_lj_labels(n: int, seed: int) -> DFTDataset:
    """C3N3 in a triclinic cell (atoms ≥ 1.5 Å apart), labelled by a C/N Lennard-Jones.

    The energies sit on top of the MACE model's atomic reference energies, as DFT energies would.
    """
    from test_mace_adapter import spread_positions

    lj = LennardJones(["C", "N"], [1.6, 1.55, 1.5], [0.05, 0.06, 0.07], cutoff_A=4.0)
    rng = np.random.default_rng(seed)
    frames = [Atoms("C3N3", positions=spread_positions(rng, 6, CN_CELL_A, 1.5), cell=CN_CELL_A, pbc=True)
              for _ in range(n)]
    data = label_with_potential(lj, frames, stress=False)
    data.energies_eV = data.energies_eV + sum(MACE_E0_eV[z] for z in (6, 6, 6, 7, 7, 7))
    return data


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The TorchScript type system:UserWarning")
@pytest.mark.filterwarnings("ignore:Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD:UserWarning")
def test_small_mace_learns_lennard_jones_forces():
    pytest.importorskip("mace")
    from exprefine.potentials import MacePotential
    from test_mace_adapter import build_small_mace

    train_set, valid_set = cn_frames_with_lj_labels(8, seed=0), cn_frames_with_lj_labels(4, seed=1)
    model = MacePotential(build_small_mace(0))
    settings = TrainSettings(epochs=4, batch_size=2, learning_rate=0.01, lr_schedule="constant")
    result = train(model, train_set, valid_set, settings, progress=False)
    before, after = result.valid_before.force_rmse_meV_per_A, result.valid_after.force_rmse_meV_per_A
    assert after < 0.8 * before, (before, after)
    again = evaluate_dft_errors(model, valid_set)
    assert again.force_rmse_meV_per_A == pytest.approx(after, rel=1e-10)  # the best epoch was restored
