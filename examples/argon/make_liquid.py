"""Make the liquid starting configuration of the argon example (liquid_500.extxyz).

An fcc lattice of 500 argon atoms at the experimental density 0.02125 Å⁻³ is melted
with the textbook Lennard-Jones argon (σ = 3.405 Å, ε/k_B = 119.8 K) at 300 K and
cooled to 85 K, so that every refinement starts from a disordered liquid instead of
a superheated crystal. Run:  python examples/argon/make_liquid.py
"""

from __future__ import annotations

from pathlib import Path

from ase.build import bulk

from exprefine.potentials import LennardJones
from exprefine.sampling import SamplerSettings, sample
from exprefine.state import from_atoms, write_state
from exprefine.units import kelvin_to_eV

HERE = Path(__file__).resolve().parent


def main() -> None:
    density_per_A3 = 0.02125
    a = (4 / density_per_A3) ** (1 / 3)
    atoms = bulk("Ar", "fcc", a=a, cubic=True).repeat((5, 5, 5))
    potential = LennardJones(["Ar"], 3.405, kelvin_to_eV(119.8), cutoff_A=10.0)
    state = from_atoms(atoms)
    hot = SamplerSettings(integrator="baoab", temperature_K=300.0, timestep_fs=5.0, friction_per_ps=5.0,
                          n_equilibration_steps=2000, n_production_steps=1, stride_steps=1, seed=1)
    melted = sample(potential, state, hot, progress=True).final
    cold = SamplerSettings(integrator="baoab", temperature_K=85.0, timestep_fs=10.0, friction_per_ps=5.0,
                           n_equilibration_steps=1000, n_production_steps=1, stride_steps=1, seed=2)
    liquid = sample(potential, melted, cold, progress=True).final.state
    liquid.velocities = None
    write_state(HERE / "liquid_500.extxyz", liquid)
    print(f"wrote {HERE / 'liquid_500.extxyz'}")


if __name__ == "__main__":
    main()
