"""Observables: per-frame values of structural and thermodynamic quantities and their ensemble averages."""

from .base import Observable
from .pressure import Pressure
from .rdf import RadialDistribution

__all__ = ["Observable", "RadialDistribution", "Pressure"]
