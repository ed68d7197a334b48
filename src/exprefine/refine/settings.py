"""How a refinement proceeds: the settings of the refiner and of its update rules."""

from __future__ import annotations

from dataclasses import dataclass, field

from .gauss_newton import GaussNewtonSettings


@dataclass
class RefinerSettings:
    """How the refinement proceeds.

    Attributes:
        n_updates: number of parameter updates (Adam steps).
        learning_rate: Adam step size (in the units of the parameters; LJ uses ln σ, ln ε).
        learning_rate_decay: factor applied to the step size after every update
            (exponential schedule; 1 keeps it constant).
        ess_threshold: resample when N_eff/N falls below this (0.9 as in Thaler & Zavadlav 2021).
        chunk_size: frames per backward pass (bounds memory).
        resample_equilibration_steps: MD steps discarded after each resampling (the first
            trajectory uses the sampler's own equilibration).
        max_rollbacks: consecutive blown-up samplings tolerated before giving up.
        final_check: sample a fresh trajectory with the final parameters and report it.
        progress: show progress bars.
        progress_lines: print one plain line per update to stderr instead (logs, pipes).
        optimizer: ``"adam"`` or ``"gauss_newton"`` (Levenberg–Marquardt; few parameters).
        adam_betas: Adam's (β₁, β₂), the decay rates of its first and second moment estimates.
        gauss_newton: damping and step-length control of the ``gauss_newton`` optimizer.
        segment_ps: run every MD sampling (first, resamplings, final check) in resumable segments of
            about this many ps under the run directory's ``md_segments/``, so that a run stopped during
            a long sampling resumes inside it (``--resume``) with the same frames; None: one piece.
    """

    n_updates: int = 50
    learning_rate: float = 0.01
    learning_rate_decay: float = 1.0
    ess_threshold: float = 0.9
    chunk_size: int = 32
    resample_equilibration_steps: int = 100
    max_rollbacks: int = 5
    final_check: bool = True
    progress: bool = True
    progress_lines: bool = False
    optimizer: str = "adam"
    adam_betas: tuple[float, float] = (0.9, 0.999)
    gauss_newton: GaussNewtonSettings = field(default_factory=GaussNewtonSettings)
    segment_ps: float | None = None

    def __post_init__(self) -> None:
        if self.optimizer not in ("adam", "gauss_newton"):
            raise ValueError(f"optimizer must be 'adam' or 'gauss_newton', got {self.optimizer!r}")
        if self.n_updates < 0:
            raise ValueError(f"n_updates must be ≥ 0, got {self.n_updates}")
        if not 0.0 < self.ess_threshold <= 1.0:
            raise ValueError(f"ess_threshold must be in (0, 1], got {self.ess_threshold}")
        if not all(0.0 <= b < 1.0 for b in self.adam_betas):
            raise ValueError(f"adam_betas must lie in [0, 1), got {self.adam_betas}")
        if self.segment_ps is not None and not self.segment_ps > 0:
            raise ValueError(f"segment_ps must be positive, got {self.segment_ps}")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 < self.learning_rate_decay <= 1.0:
            raise ValueError(f"learning_rate_decay must be in (0, 1], got {self.learning_rate_decay}")
