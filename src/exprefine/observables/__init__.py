"""Observables: per-frame values of structural and thermodynamic quantities and their ensemble averages."""

from .adf import AngularDistribution
from .base import CellTooSmall, Observable, thick_enough
from .binning import RadialBinning
from .density import Density
from .elastic import BulkModulus, ElasticConstant, StrainDerivatives, strain_derivatives
from .heat_capacity import HeatCapacity
from .lattice import LatticeParameter, ThermalExpansion, linear_thermal_expansion
from .peaks import InterlayerSpacing, PeakPosition
from .pressure import Pressure
from .rdf import RadialDistribution
from .scattering import PairDistributionFunction, StructureFactor, TotalRDF

__all__ = [
    "CellTooSmall",
    "RadialBinning",
    "thick_enough",
    "Observable",
    "Density",
    "InterlayerSpacing",
    "PeakPosition",
    "RadialDistribution",
    "Pressure",
    "AngularDistribution",
    "TotalRDF",
    "PairDistributionFunction",
    "StructureFactor",
    "ElasticConstant",
    "BulkModulus",
    "StrainDerivatives",
    "strain_derivatives",
    "HeatCapacity",
    "LatticeParameter",
    "ThermalExpansion",
    "linear_thermal_expansion",
]
