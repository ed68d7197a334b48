"""The public checks catch deliberately broken potentials, each with the right message."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import bulk

from exprefine.potentials import LennardJones, PairSpline
from exprefine.potentials.base import PotentialOutput
from exprefine.state import State, from_atoms
from exprefine.testing import (
    TOLERANCES,
    PotentialCheckReport,
    check_gradient_wrt_parameters,
    check_potential,
)

CUTOFF_A = 7.0


def _lj() -> LennardJones:
    return LennardJones(["Ar"], 3.405, 0.0103, CUTOFF_A)


def _crystal() -> State:
    atoms = bulk("Ar", "fcc", a=5.26) * (2, 2, 2)
    atoms.set_cell(atoms.cell.array @ np.array([[1.0, 0.04, 0.0], [0.0, 1.0, 0.03], [-0.02, 0.0, 1.0]]), scale_atoms=True)
    atoms.rattle(0.1, seed=11)
    return from_atoms(atoms)


class ScaledForces(LennardJones):
    """Forces 1 % too large."""

    def compute(self, state, **kwargs) -> PotentialOutput:
        out = super().compute(state, **kwargs)
        out.forces_eV_per_A = 1.01 * out.forces_eV_per_A
        return out


class ScaledStress(LennardJones):
    """Stress 1 % too large."""

    def compute(self, state, **kwargs) -> PotentialOutput:
        out = super().compute(state, **kwargs)
        if out.stress_eV_per_A3 is not None:
            out.stress_eV_per_A3 = 1.01 * out.stress_eV_per_A3
        return out


class ExternalField(LennardJones):
    """A uniform field along x: consistent forces, but not translation invariant."""

    def energy(self, state):
        e = super().energy(state)
        return e + torch.zeros_like(e).index_add(0, state.system_idx, 0.01 * state.positions[:, 0])


class Anisotropic(LennardJones):
    """Adds Σ_pairs x-component² of the pair vector: translation but not rotation invariant."""

    def energy(self, state):
        e = super().energy(state)
        from exprefine.neighbors import build_pairs

        pairs = build_pairs(state, 4.0)
        dx = pairs.vectors(state.positions, state.cell)[:, 0]
        return e + torch.zeros_like(e).index_add(0, pairs.system, 1e-3 * dx**2)


class IndexWeighted(LennardJones):
    """Weights each atom's distance to atom 0 of its system by its index: not permutation invariant."""

    def energy(self, state):
        e = super().energy(state)
        starts = torch.cumsum(state.n_atoms_per_system, 0) - state.n_atoms_per_system
        first = state.positions[starts][state.system_idx]
        local = torch.arange(state.n_atoms, dtype=state.dtype) - starts[state.system_idx].to(state.dtype)
        term = 1e-3 * local * ((state.positions - first) ** 2).sum(dim=1)
        return e + torch.zeros_like(e).index_add(0, state.system_idx, term)


class BatchCoupled(LennardJones):
    """Every system also feels the mean energy of the batch: wrong as soon as systems differ."""

    def energy(self, state):
        e = super().energy(state)
        return e + 0.1 * e.mean()


@pytest.mark.parametrize(
    "broken, message",
    [
        (ScaledForces, "forces differ from finite differences"),
        (ScaledStress, "stress differs from finite differences"),
        (ExternalField, "rigid translation"),
        (Anisotropic, "rigid rotation"),
        (IndexWeighted, "permutation"),
        (BatchCoupled, "batched energies differ"),
    ],
)
def test_check_potential_catches_broken_potentials(broken, message):
    potential = broken(["Ar"], 3.405, 0.0103, CUTOFF_A)
    with pytest.raises(AssertionError, match=message) as info:
        check_potential(potential, _crystal(), max_fd_atoms=4)
    assert broken.__name__ in str(info.value)


def test_check_potential_passes_and_reports():
    report = check_potential(_lj(), _crystal(), max_fd_atoms=4)
    assert isinstance(report, PotentialCheckReport)
    assert report.tolerances == TOLERANCES[torch.float64]
    assert report.force_fd_error_eV_per_A < report.tolerances.force_atol_eV_per_A
    assert report.batch_energy_error_eV == 0.0


def test_check_potential_overrides_and_bad_dtype():
    report = check_potential(_lj(), _crystal(), atol_force=1e-3, eps=1e-3, strain_eps=1e-4, max_fd_atoms=2)
    assert report.tolerances.force_atol_eV_per_A == 1e-3 and report.tolerances.displacement_A == 1e-3
    with pytest.raises(ValueError, match="float16"):
        check_potential(_lj(), _crystal(), dtype=torch.float16)


class DetachedParameter(PairSpline):
    """Half of the energy ignores autograd for the knot values."""

    def pair_energy(self, r_A, pair_type):
        full = super().pair_energy(r_A, pair_type)
        return 0.5 * full + 0.5 * full.detach()


def test_check_gradient_wrt_parameters():
    spline = PairSpline.from_function(["Ar"], lambda r: 0.01 * np.exp(-r), CUTOFF_A, 3.0, 8)
    report = check_gradient_wrt_parameters(spline, _crystal())
    assert report.n_entries_checked == 7 and set(report.max_error_by_parameter) == {"values_eV"}
    assert check_gradient_wrt_parameters(spline, _crystal(), max_entries_per_parameter=3).n_entries_checked == 3

    broken = DetachedParameter(["Ar"], CUTOFF_A, 3.0, 8, spline.values_eV.detach()[0])
    with pytest.raises(AssertionError, match="values_eV"):
        check_gradient_wrt_parameters(broken, _crystal())

    frozen = LennardJones(["Ar"], 3.405, 0.0103, CUTOFF_A, trainable=False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        check_gradient_wrt_parameters(frozen, _crystal())


def test_checks_leave_the_potential_untouched():
    lj = LennardJones(["Ar"], 3.405, 0.0103, CUTOFF_A)
    before = {k: v.clone() for k, v in lj.state_dict().items()}
    check_gradient_wrt_parameters(lj, _crystal())
    cluster = from_atoms(Atoms("Ar3", positions=[[0, 0, 0], [3.8, 0, 0], [0, 3.7, 0.3]]))
    check_potential(lj, cluster, dtype=torch.float32)
    for k, v in lj.state_dict().items():
        assert torch.equal(v, before[k]) and v.dtype == torch.float64
