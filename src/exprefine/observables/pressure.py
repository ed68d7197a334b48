"""Instantaneous pressure from the virial, in bar.

    P = N k_B T / V − tr(σ) / 3,

with σ the potential's stress tensor in ASE's sign convention (σ = (1/V) ∂U/∂ε,
so −tr(σ)/3 is the virial pressure). Trajectories store no velocities, so the
kinetic part uses the temperature T of the ensemble instead of the instantaneous
kinetic energy; in the canonical ensemble both have the same average,
⟨K⟩ = (3/2) N k_B T (a thermostat that conserves total momentum has 3N − 3
degrees of freedom: a relative difference of 1/N in the kinetic term only).

The virial depends on the parameters θ, so this observable is recomputed with a
graph during refinement: with gradients enabled the values are differentiable in θ.
"""

from __future__ import annotations

import math

import torch

from ..potentials.base import Potential
from ..state import State
from ..trajectory import Trajectory
from ..units import BOLTZMANN_eV_per_K, eV_PER_A3_IN_bar
from .base import Observable

#: Relative mismatch allowed between ``temperature_K`` and a trajectory's kT.
TEMPERATURE_RTOL = 1e-3


class Pressure(Observable):
    """Instantaneous pressure of each frame in bar (kinetic part at the ensemble temperature).

    Args:
        temperature_K: temperature of the ensemble the frames represent, K.
    """

    name = "pressure"
    unit = "bar"
    depends_on_parameters = True

    def __init__(self, temperature_K: float) -> None:
        temperature_K = float(temperature_K)
        if not (math.isfinite(temperature_K) and temperature_K > 0):
            raise ValueError(f"temperature_K must be positive and finite, got {temperature_K}")
        self.temperature_K = temperature_K

    def grid(self) -> None:
        return None

    def grid_label(self) -> str:
        return ""

    def check(self, trajectory: Trajectory) -> None:
        """Refuse non-periodic frames and a trajectory sampled at another temperature."""
        if not bool(torch.as_tensor(trajectory.pbc).all()):
            raise ValueError(f"pressure needs cells periodic in all three directions, got pbc={trajectory.pbc.tolist()}")
        traj_T = trajectory.kT_eV / BOLTZMANN_eV_per_K
        if abs(traj_T - self.temperature_K) > TEMPERATURE_RTOL * self.temperature_K:
            raise ValueError(
                f"pressure: temperature_K = {self.temperature_K:g} K but the trajectory was sampled at {traj_T:g} K"
            )

    def per_frame(self, frames: State, potential: Potential | None = None) -> torch.Tensor:
        """[n_frames] pressure in bar; differentiable in the potential's parameters when grad is enabled.

        Args:
            frames: batch with one system per frame (positions Å, cells Å).
            potential: the potential whose virial enters; required.
        """
        if potential is None:
            raise ValueError("pressure needs the potential (the virial part depends on it)")
        if not bool(frames.pbc.all()):
            raise ValueError(f"pressure needs cells periodic in all three directions, got pbc={frames.pbc.tolist()}")
        create_graph = torch.is_grad_enabled()
        # The strain derivative needs autograd even when the caller runs under no_grad
        # (Observable.evaluate does); without create_graph the result carries no graph.
        with torch.enable_grad():
            out = potential.compute(frames, forces=False, stress=True, create_graph=create_graph)
        stress = out.stress_eV_per_A3
        assert stress is not None
        volume = frames.volume_A3()
        n_atoms = frames.n_atoms_per_system.to(volume.dtype)
        kinetic = n_atoms * (BOLTZMANN_eV_per_K * self.temperature_K) / volume
        virial = -torch.diagonal(stress, dim1=1, dim2=2).sum(-1) / 3.0
        return (kinetic + virial.to(volume.dtype)) * eV_PER_A3_IN_bar
