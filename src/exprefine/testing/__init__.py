"""Public helpers to test potentials: derivative, symmetry and batching checks."""

from .checks import (
    TOLERANCES,
    CheckTolerances,
    ParameterGradientReport,
    PotentialCheckReport,
    check_gradient_wrt_parameters,
    check_potential,
)

__all__ = [
    "TOLERANCES",
    "CheckTolerances",
    "ParameterGradientReport",
    "PotentialCheckReport",
    "check_gradient_wrt_parameters",
    "check_potential",
]
