"""Potentials: the base contract, built-in physical and learned terms, and adapters."""

from .ase_calculator import ExprefineCalculator
from .base import PairPotential, Potential, PotentialOutput
from .lennard_jones import LennardJones
from .spline import PairSpline
from .sum import SumPotential

__all__ = ["Potential", "PotentialOutput", "PairPotential", "LennardJones", "SumPotential", "PairSpline", "ExprefineCalculator"]
