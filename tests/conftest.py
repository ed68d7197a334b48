"""Shared fixtures: small Lennard-Jones argon systems and short trajectories."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from ase.build import bulk

from exprefine.potentials import LennardJones, PairDispersion, PairSpline
from exprefine.sampling import SamplerSettings, sample
from exprefine.state import from_atoms
from exprefine.trajectory import Trajectory
from exprefine.units import kelvin_to_eV

REPO = Path(__file__).resolve().parents[1]


def import_script(folder: Path, name: str):
    """The example or benchmark script ``folder/name.py`` as a module (its folder on sys.path while importing).

    Loaded from its path under a name unique to its folder, so that scripts of the same name in two
    examples (``make_labels.py``) never stand in for each other."""
    import importlib.util
    import sys

    unique = f"{folder.parent.name}_{folder.name}_{name}"
    if unique in sys.modules:
        return sys.modules[unique]
    spec = importlib.util.spec_from_file_location(unique, folder / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module  # dataclasses look their module up
    sys.path.insert(0, str(folder))
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[unique]
        raise
    finally:
        sys.path.remove(str(folder))
    return module


ARGON_DENSITY_PER_A3 = 0.02125
SIGMA_TRUE_A = 3.405
EPSILON_TRUE_K = 119.8


def argon_lattice(repeat: int = 3, density_per_A3: float = ARGON_DENSITY_PER_A3):
    """fcc argon at the given number density (4 atoms per cubic cell)."""
    a = (4 / density_per_A3) ** (1 / 3)
    return bulk("Ar", "fcc", a=a, cubic=True).repeat((repeat, repeat, repeat))


def argon_lj(sigma_A: float = SIGMA_TRUE_A, epsilon_K: float = EPSILON_TRUE_K, cutoff_A: float = 8.0) -> LennardJones:
    return LennardJones(["Ar"], sigma_A, kelvin_to_eV(epsilon_K), cutoff_A=cutoff_A)


def cn_crystal(seed: int = 0):
    """A rattled two-element (C, N) crystal in a triclinic cell, 32 atoms, nearest pairs ≈ 3.2 Å."""
    atoms = bulk("C", "fcc", a=4.6, cubic=True) * (2, 2, 2)
    atoms.set_cell(atoms.cell.array @ np.array([[1.03, 0.02, 0.0], [0.0, 0.98, 0.03], [0.02, 0.0, 1.01]]),
                   scale_atoms=True)
    rng = np.random.default_rng(seed)
    symbols = np.array(["C"] * len(atoms))
    symbols[rng.permutation(len(atoms))[: len(atoms) // 2]] = "N"
    atoms.set_chemical_symbols(symbols.tolist())
    atoms.rattle(0.08, seed=seed)
    return atoms


def cn_dispersion(cutoff_A: float = 7.0) -> PairDispersion:
    """C6, C8 and R of the size GFN1's D3 gives C and N (eV·Å⁶, eV·Å⁸, Å)."""
    return PairDispersion(["C", "N"], cutoff_A, c6_eV_A6=[18.0, 15.0, 12.5], c8_eV_A8=[300.0, 250.0, 210.0],
                          damping_radius_A=[3.4, 3.3, 3.2], switch_on_A=cutoff_A - 2.0)


def cn_correction_terms() -> list:
    spline = PairSpline(["C", "N"], cutoff_A=8.0, r_min_A=3.0, n_knots=11)
    rng = np.random.default_rng(5)
    with torch.no_grad():
        spline.values_eV.copy_(torch.from_numpy(rng.normal(scale=2e-3, size=spline.values_eV.shape)))
    return [spline, cn_dispersion(cutoff_A=7.0)]


#: a triclinic cell whose heights are all ≥ 18 Å (rows are lattice vectors, Å)
TRICLINIC = np.array([[20.0, 0.0, 0.0], [5.0, 19.0, 0.0], [3.0, 4.0, 18.0]])


def make_trajectory(positions: np.ndarray, cells: np.ndarray, numbers: np.ndarray) -> Trajectory:
    """positions [F, N, 3] Å, cells [F, 3, 3] Å, numbers [N]."""
    f, n = positions.shape[:2]
    return Trajectory(
        positions_A=torch.as_tensor(positions, dtype=torch.float64),
        cells_A=torch.as_tensor(cells, dtype=torch.float64),
        pbc=torch.ones(3, dtype=torch.bool),
        atomic_numbers=torch.as_tensor(numbers, dtype=torch.long),
        masses_amu=torch.full((n,), 40.0, dtype=torch.float64),
        energies_eV=torch.zeros(f, dtype=torch.float64),
        kT_eV=0.01,
        fingerprint="test",
    )


@contextmanager
def one_thread():
    """Run a block with one torch thread: faster and steadier on the 2-core CI machine.

    Session- and module-scoped fixtures run before the autouse function fixture below,
    so they must set the thread count themselves.
    """
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(scope="session")
def argon_108_trajectory():
    """40 frames of 108 LJ argon atoms at 85 K (hot start melts the lattice)."""
    with one_thread():
        return _argon_108_trajectory()


def _argon_108_trajectory():
    potential = argon_lj()
    state = from_atoms(argon_lattice(3))
    hot = SamplerSettings(temperature_K=250.0, timestep_fs=10.0, friction_per_ps=5.0,
                          n_equilibration_steps=300, n_production_steps=1, stride_steps=1, seed=11)
    melted = sample(potential, state, hot).final
    cold = SamplerSettings(temperature_K=85.0, timestep_fs=10.0, friction_per_ps=5.0,
                           n_equilibration_steps=200, n_production_steps=400, stride_steps=10, seed=12)
    result = sample(potential, melted, cold)
    return potential, result


def refine_lj_with_correction(argon_108_trajectory, correction, learning_rate: float) -> list:
    """LJ with σ 3 % too large (frozen) plus a learnable ``correction`` term, refined by 4 Adam updates
    against the fixture's own g(r) (3–8 Å) on one trajectory; returns the update history.

    The correction's frozen parameters are checked bit-identical afterwards."""
    from exprefine.observables import RadialDistribution
    from exprefine.potentials import SumPotential
    from exprefine.refine import Refiner, RefinerSettings, Target

    _, result = argon_108_trajectory
    rdf = RadialDistribution(r_max_A=8.0, r_min_A=2.5, bin_width_A=0.1, species=("Ar", "Ar"))
    target = Target("g_r", rdf, rdf.evaluate(result.trajectory).mean(0).to(torch.float64), mask=rdf.grid() >= 3.0)
    lj = LennardJones(["Ar"], 3.5, kelvin_to_eV(119.8), cutoff_A=8.0, trainable=False)
    frozen = {n: p.detach().clone() for n, p in correction.named_parameters() if not p.requires_grad}
    assert frozen, "the correction should have frozen parameters to check"
    start = result.final.state.clone()
    start.velocities = None
    sampler = SamplerSettings(temperature_K=85.0, timestep_fs=10.0, friction_per_ps=2.0, n_equilibration_steps=100,
                              n_production_steps=200, stride_steps=10, seed=4)
    settings = RefinerSettings(n_updates=4, learning_rate=learning_rate, ess_threshold=0.2, chunk_size=10,
                               resample_equilibration_steps=50, progress=False, final_check=False)
    history = Refiner(SumPotential([lj, correction]), [target], sampler, start, settings).run().history
    for name, p in correction.named_parameters():
        if name in frozen:
            assert torch.equal(p.detach(), frozen[name]), name
    return history


@pytest.fixture(autouse=True)
def _single_thread():
    """Tests run on 2-core CI machines next to other work: one thread each is faster and steadier."""
    with one_thread():
        yield
