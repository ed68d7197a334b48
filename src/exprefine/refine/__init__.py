"""The refinement loop (DiffTRe), its targets, checkpoints, logs and plots."""

from .fused import FusedDFT
from .gauss_newton import GaussNewtonSettings, LinearModel, linearize
from .prior import ParameterPrior, prior_loss
from .records import Evaluation, RefinementResult, UpdateRecord, evaluate_targets
from .refiner import Refiner
from .settings import RefinerSettings
from .state_points import StatePoint
from .targets import Target, total_loss
from .update_rules import AdamRule, GaussNewtonRule, UpdateRule

__all__ = [
    "AdamRule",
    "GaussNewtonRule",
    "UpdateRule",
    "Evaluation",
    "FusedDFT",
    "GaussNewtonSettings",
    "LinearModel",
    "ParameterPrior",
    "RefinementResult",
    "Refiner",
    "RefinerSettings",
    "StatePoint",
    "Target",
    "UpdateRecord",
    "evaluate_targets",
    "linearize",
    "prior_loss",
    "total_loss",
]
