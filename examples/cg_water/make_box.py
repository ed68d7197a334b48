"""Make the starting box of the coarse-grained water example: N one-site waters at 0.99828 g/cm³.

Each water is one particle (element O, mass 18.015 u) at the oxygen position. The
box edge follows from the density: L = (N m / ρ)^(1/3), 30.0 Å for the 901 waters of
the DiffTRe benchmark. The particles start on the sites of a simple-cubic grid (N of
the n³ sites, n = ⌈N^(1/3)⌉, chosen at random), are melted at 600 K and equilibrated
at 296.15 K with the repulsive prior of the configs plus the SPC/E O–O Lennard-Jones
term (σ = 3.166 Å, ε = 0.650 kJ/mol) as a soft, liquid-like stand-in, and are written
as extxyz with the masses.

    python examples/cg_water/make_box.py             # water_901.extxyz (3.0 nm box)
    python examples/cg_water/make_box.py --n 256     # water_256.extxyz (1.97 nm box, the CPU variant)
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from ase import Atoms

from exprefine.potentials import LennardJones, RepulsivePrior, SumPotential
from exprefine.sampling import SamplerSettings, sample
from exprefine.state import from_atoms, write_state
from exprefine.units import G_PER_CM3_IN_AMU_PER_A3, kJ_PER_MOL_IN_eV

HERE = Path(__file__).resolve().parent
WATER_MASS_AMU = 18.015
DENSITY_G_PER_CM3 = 0.99828
TEMPERATURE_K = 296.15


def box_edge_A(n_molecules: int, density_g_per_cm3: float = DENSITY_G_PER_CM3) -> float:
    """Edge in Å of the cubic box that holds ``n_molecules`` waters at the given density."""
    return (n_molecules * WATER_MASS_AMU / (density_g_per_cm3 * G_PER_CM3_IN_AMU_PER_A3)) ** (1.0 / 3.0)


def grid_atoms(n_molecules: int, seed: int) -> Atoms:
    """``n_molecules`` O particles on randomly chosen sites of a simple-cubic grid filling the box."""
    edge = box_edge_A(n_molecules)
    n_side = math.ceil(n_molecules ** (1.0 / 3.0) - 1e-9)
    spacing = edge / n_side
    sites = np.stack(np.meshgrid(*[np.arange(n_side)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    rng = np.random.default_rng(seed)
    chosen = sites[np.sort(rng.choice(len(sites), n_molecules, replace=False))]
    atoms = Atoms(["O"] * n_molecules, positions=(chosen + 0.5) * spacing, cell=np.eye(3) * edge, pbc=True)
    atoms.set_masses(np.full(n_molecules, WATER_MASS_AMU))
    return atoms


def melting_potential() -> SumPotential:
    """Prior 4ε(σ/r)¹² (σ = 3.165 Å, ε = 0.25 kJ/mol, as in the configs) plus SPC/E O–O Lennard-Jones."""
    prior = RepulsivePrior(["O"], 3.165, 0.25 * kJ_PER_MOL_IN_eV, cutoff_A=5.0)
    lj = LennardJones(["O"], 3.166, 0.650 * kJ_PER_MOL_IN_eV, cutoff_A=7.0, trainable=False)
    return SumPotential([prior, lj])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=901, help="number of waters (default 901: 3.0 nm box)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", type=Path, default=None, help="default: water_<n>.extxyz next to this script")
    args = parser.parse_args()

    atoms = grid_atoms(args.n, args.seed)
    state = from_atoms(atoms)
    assert np.allclose(state.masses.numpy(), WATER_MASS_AMU), "from_atoms must keep the custom masses"
    potential = melting_potential()
    hot = SamplerSettings(integrator="baoab", temperature_K=600.0, timestep_fs=2.0, friction_per_ps=10.0,
                          n_equilibration_steps=1500, n_production_steps=1, stride_steps=1, seed=args.seed + 1)
    melted = sample(potential, state, hot, progress=True).final
    cold = SamplerSettings(integrator="baoab", temperature_K=TEMPERATURE_K, timestep_fs=2.0, friction_per_ps=10.0,
                           n_equilibration_steps=1500, n_production_steps=1, stride_steps=1, seed=args.seed + 2)
    liquid = sample(potential, melted, cold, progress=True).final.state
    liquid.velocities = None
    output = args.output or HERE / f"water_{args.n}.extxyz"
    write_state(output, liquid)
    density = float(liquid.masses.sum()) / float(liquid.volume_A3()[0]) / G_PER_CM3_IN_AMU_PER_A3
    print(f"wrote {output}: {args.n} waters, box {box_edge_A(args.n):.4f} Å, {density:.5f} g/cm³")


if __name__ == "__main__":
    main()
