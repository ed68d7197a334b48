"""Potentials: the base contract, built-in physical and learned terms, and adapters."""

from .ase_calculator import ExprefineCalculator
from .base import PairPotential, Potential, PotentialOutput
from .lennard_jones import LennardJones
from .mace import MacePotential  # mace-torch itself is imported only when a model is built
from .spline import PairSpline
from .selection import select_trainable
from .sum import SumPotential
from .torch_model import TorchEnergyModel

__all__ = ["Potential", "PotentialOutput", "PairPotential", "LennardJones", "SumPotential", "PairSpline", "ExprefineCalculator",
           "MacePotential", "TorchEnergyModel", "select_trainable"]
