"""Potentials: the base contract, built-in physical and learned terms, and adapters."""

from .base import PairPotential, Potential, PotentialOutput
from .lennard_jones import LennardJones
from .sum import SumPotential

__all__ = ["Potential", "PotentialOutput", "PairPotential", "LennardJones", "SumPotential"]
