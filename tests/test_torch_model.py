"""TorchEnergyModel (a user's torch module as a potential) and trainable-parameter selection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk
from torch import nn

from exprefine.potentials import LennardJones, TorchEnergyModel
from exprefine.potentials.selection import mace_presets, select_trainable, selected_names
from exprefine.state import concatenate, from_atoms
from exprefine.testing.checks import check_gradient_wrt_parameters, check_potential


class LennardJonesModule(nn.Module):
    """Shifted LJ written against the TorchEnergyModel signature (full neighbour list)."""

    def __init__(self, sigma_A: float, epsilon_eV: float, cutoff_A: float) -> None:
        super().__init__()
        self.log_sigma = nn.Parameter(torch.tensor(float(np.log(sigma_A)), dtype=torch.float64))
        self.log_epsilon = nn.Parameter(torch.tensor(float(np.log(epsilon_eV)), dtype=torch.float64))
        self.cutoff_A = cutoff_A

    def forward(self, positions, cell, atomic_numbers, system_idx, edge_index, shifts_A):
        i, j = edge_index
        r = (positions[j] - positions[i] + shifts_A).norm(dim=-1)
        sigma, eps = self.log_sigma.exp(), self.log_epsilon.exp()
        s6, c6 = (sigma / r) ** 6, (sigma / self.cutoff_A) ** 6
        e_pair = 4.0 * eps * ((s6 * s6 - s6) - (c6 * c6 - c6))
        energies = torch.zeros(cell.shape[0], dtype=positions.dtype)
        return energies.index_add(0, system_idx[i], 0.5 * e_pair)  # each pair appears twice


class TinySmoothModel(nn.Module):
    """A smooth learned-looking model: per-element atom energies + Morse pairs × (1 − (r/r_c)²)²."""

    def __init__(self, cutoff_A: float = 4.0) -> None:
        super().__init__()
        self.cutoff_A = cutoff_A
        self.atom_energy = nn.Parameter(torch.linspace(-0.3, 0.3, 119, dtype=torch.float64))
        self.morse = nn.ParameterDict({
            "depth": nn.Parameter(torch.tensor(0.2, dtype=torch.float64)),
            "width": nn.Parameter(torch.tensor(1.3, dtype=torch.float64)),
            "r0": nn.Parameter(torch.tensor(2.2, dtype=torch.float64)),
        })

    def forward(self, positions, cell, atomic_numbers, system_idx, edge_index, shifts_A):
        i, j = edge_index
        r = (positions[j] - positions[i] + shifts_A).norm(dim=-1)
        x = 1.0 - torch.exp(-self.morse["width"] * (r - self.morse["r0"]))
        fc = (1.0 - (r / self.cutoff_A) ** 2) ** 2
        e_pair = 0.5 * self.morse["depth"] * (x * x - 1.0) * fc
        energies = torch.zeros(cell.shape[0], dtype=positions.dtype)
        energies = energies.index_add(0, system_idx, self.atom_energy[atomic_numbers])
        return energies.index_add(0, system_idx[i], e_pair)


def triclinic_mixture() -> Atoms:
    rng = np.random.default_rng(4)
    cell = np.array([[5.0, 0.0, 0.0], [0.8, 4.6, 0.0], [-0.5, 0.7, 5.2]])
    frac = np.array([[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5], [0.25, 0.25, 0.25], [0.75, 0.75, 0.25]])
    atoms = Atoms("ArArKrKrNeNe", scaled_positions=frac, cell=cell, pbc=True)
    atoms.positions += rng.normal(scale=0.1, size=atoms.positions.shape)
    return atoms


def test_matches_builtin_lennard_jones():
    """Edge conventions (direction, shifts, full list) give exactly the built-in LJ energies and forces."""
    argon = from_atoms(bulk("Ar", "fcc", a=5.26, cubic=True).repeat(2))
    argon.positions += torch.as_tensor(np.random.default_rng(0).normal(scale=0.05, size=(argon.n_atoms, 3)))
    wrapped = TorchEnergyModel(LennardJonesModule(3.405, 0.0103, 6.0), cutoff_A=6.0)
    builtin = LennardJones(["Ar"], 3.405, 0.0103, cutoff_A=6.0)
    a = wrapped.compute(argon, forces=True, stress=True)
    b = builtin.compute(argon, forces=True, stress=True)
    print(f"|ΔE| {float((a.energy_eV - b.energy_eV).abs().max()):.1e} eV")
    assert torch.allclose(a.energy_eV, b.energy_eV, rtol=0, atol=1e-12)
    assert torch.allclose(a.forces_eV_per_A, b.forces_eV_per_A, rtol=0, atol=1e-12)
    assert torch.allclose(a.stress_eV_per_A3, b.stress_eV_per_A3, rtol=0, atol=1e-14)


def test_half_list_passes_each_pair_once():
    state = from_atoms(triclinic_mixture())
    full = TorchEnergyModel(LennardJonesModule(3.0, 0.01, 4.5), cutoff_A=4.5)
    half = TorchEnergyModel(LennardJonesModule(3.0, 0.01, 4.5), cutoff_A=4.5, full_list=False)
    assert torch.allclose(half.energy(state) * 2.0, full.energy(state), rtol=1e-13, atol=0)


def test_conformance_and_parameter_gradient():
    model = TorchEnergyModel(TinySmoothModel(), cutoff_A=4.0)
    state = concatenate([from_atoms(triclinic_mixture()), from_atoms(triclinic_mixture().repeat((1, 1, 2)))])
    report = check_potential(model, state)
    print(report)
    grads = check_gradient_wrt_parameters(model, state)
    print(grads.max_error_by_parameter)


def test_trainable_patterns_freeze_the_rest():
    model = TorchEnergyModel(TinySmoothModel(), cutoff_A=4.0, trainable=["morse.depth", "re:r0$"])
    assert set(model.trainable_parameter_names()) == {"morse.depth", "morse.r0"}
    assert not model.module.atom_energy.requires_grad and not model.module.morse["width"].requires_grad
    assert set(TorchEnergyModel(TinySmoothModel(), cutoff_A=4.0, trainable="morse").trainable_parameter_names()) == {
        "morse.depth", "morse.width", "morse.r0"}
    assert TorchEnergyModel(TinySmoothModel(), cutoff_A=4.0, trainable="none").trainable_parameter_names() == []
    with pytest.raises(ValueError, match="matches no parameter"):
        TorchEnergyModel(TinySmoothModel(), cutoff_A=4.0, trainable="morse.dpeth")


def test_wrong_output_shape_is_a_clear_error():
    class PerAtom(nn.Module):
        def forward(self, positions, cell, atomic_numbers, system_idx, edge_index, shifts_A):
            return positions.sum(dim=-1)

    with pytest.raises(ValueError, match=r"shape \[1\]"):
        TorchEnergyModel(PerAtom(), cutoff_A=3.0).energy(from_atoms(triclinic_mixture()))


def test_select_trainable_with_mace_presets():
    """Presets on a module laid out like MACE (names only; no MACE needed)."""
    layout = nn.Module()
    layout.node_embedding = nn.Linear(2, 2)
    layout.interactions = nn.ModuleList([nn.ModuleDict({"conv_tp_weights": nn.Linear(2, 2)}) for _ in range(2)])
    layout.products = nn.ModuleList([nn.Linear(2, 2) for _ in range(2)])
    layout.readouts = nn.ModuleList([nn.Linear(2, 1) for _ in range(2)])
    presets = mace_presets(2)
    names = select_trainable(layout, "last_interaction", presets)
    assert names == ["interactions.1.conv_tp_weights.weight", "interactions.1.conv_tp_weights.bias",
                     "products.1.weight", "products.1.bias"]
    assert [n for n, p in layout.named_parameters() if p.requires_grad] == names
    both = selected_names(layout, ["readouts", "embedding"], presets)
    assert both == ["node_embedding.weight", "node_embedding.bias"] + [
        f"readouts.{k}.{w}" for k in range(2) for w in ("weight", "bias")]
    assert len(selected_names(layout, "all", presets)) == len(list(layout.parameters()))
    assert selected_names(layout, "radial", presets) == [
        f"interactions.{k}.conv_tp_weights.{w}" for k in range(2) for w in ("weight", "bias")]
    assert selected_names(layout, "products.*.weight", presets) == ["products.0.weight", "products.1.weight"]
