"""The refinement loop (DiffTRe), its targets, checkpoints, logs and plots."""

from .fused import FusedDFT
from .gauss_newton import GaussNewtonSettings, LinearModel, linearize
from .refiner import Evaluation, RefinementResult, Refiner, RefinerSettings, UpdateRecord, evaluate_targets
from .targets import Target, total_loss

__all__ = [
    "Evaluation",
    "FusedDFT",
    "GaussNewtonSettings",
    "LinearModel",
    "RefinementResult",
    "Refiner",
    "RefinerSettings",
    "Target",
    "UpdateRecord",
    "evaluate_targets",
    "linearize",
    "total_loss",
]
