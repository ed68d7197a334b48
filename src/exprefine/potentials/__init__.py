"""Potentials: the base contract, built-in physical and learned terms, and adapters."""

from .ase_calculator import ExprefineCalculator
from .base import PairPotential, Potential, PotentialOutput
from .deepmd import DeepmdPotential  # deepmd-kit itself is imported only when a model is built
from .dftd3 import D3Dispersion, D3Parameters  # the dftd3 package is imported only when built
from .dispersion import PairDispersion
from .files import MODEL_SUFFIXES, load_model_file
from .lennard_jones import LennardJones
from .mace import MacePotential  # mace-torch itself is imported only when a model is built
from .repulsive import RepulsivePrior
from .selection import select_trainable
from .spline import PairSpline
from .stillinger_weber import StillingerWeberPair, stillinger_weber_silicon
from .sum import SumPotential
from .three_body import StillingerWeberThreeBody
from .torch_model import TorchEnergyModel

__all__ = ["Potential", "PotentialOutput", "PairPotential", "LennardJones", "SumPotential", "PairSpline", "PairDispersion",
           "ExprefineCalculator", "MacePotential", "DeepmdPotential", "TorchEnergyModel", "select_trainable", "RepulsivePrior",
           "StillingerWeberThreeBody", "StillingerWeberPair", "stillinger_weber_silicon",
           "D3Dispersion", "D3Parameters", "MODEL_SUFFIXES", "load_model_file"]
