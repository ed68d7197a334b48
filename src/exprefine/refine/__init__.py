"""The refinement loop (DiffTRe), its targets, checkpoints, logs and plots."""

from .refiner import Evaluation, RefinementResult, Refiner, RefinerSettings, UpdateRecord, evaluate_targets
from .targets import Target, total_loss

__all__ = [
    "Evaluation",
    "RefinementResult",
    "Refiner",
    "RefinerSettings",
    "Target",
    "UpdateRecord",
    "evaluate_targets",
    "total_loss",
]
