"""Closed-loop metrics: how much of the missing physics a refinement recovered.

When the "experiment" is synthetic, the potential that generated it (the reference, e.g. a
base MLIP plus the D3 dispersion it lacks) is known, and a refined model can be measured
against it directly, not only against the data it was fitted to: forces, stress and energies
on the same frames. The frames are labelled once with the reference
(:func:`~exprefine.data.predict.label_with_potential`) and every model is scored on those
labels with the DFT metrics (:func:`~exprefine.data.metrics.evaluate_dft_errors`): force and
stress RMSE, and the per-frame energy error per atom with its mean removed (a constant offset
is invisible to dynamics and to structure data).

For the base model the error against the reference is the missing term itself (its RMS);
for the reference it is zero. :func:`recovered_fraction` says how much of the base model's
force error a refinement removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Sequence

from .data.dft import DFTDataset
from .data.metrics import DFTErrors, evaluate_dft_errors
from .data.predict import label_with_potential
from .potentials.base import Potential
from .state import State, from_atoms
from .trajectory import Trajectory

if TYPE_CHECKING:  # pragma: no cover
    from ase import Atoms


@dataclass
class FrameSetComparison:
    """Errors of several models against one reference on one set of frames.

    Attributes:
        frames: what the frames are (e.g. "MD of the reference, 4x4").
        n_frames: frames compared.
        n_atoms_per_frame: atoms of each frame (the first frame's count).
        errors: model name → its errors against the reference (energy mean/SD per atom, forces,
            stress), in the order the models were given.
    """

    frames: str
    n_frames: int
    n_atoms_per_frame: int
    errors: dict[str, DFTErrors] = field(default_factory=dict)

    def markdown_rows(self) -> list[list[str]]:
        """One row per model: frames, model, F RMSE (meV/Å), E SD and mean (meV/atom), stress RMSE (meV/Å³)."""
        rows = []
        for name, e in self.errors.items():
            stress = "—" if e.stress_rmse_meV_per_A3 is None else f"{e.stress_rmse_meV_per_A3:.3f}"
            rows.append([f"{self.frames} ({self.n_frames} × {self.n_atoms_per_frame} atoms)", name,
                         f"{e.force_rmse_meV_per_A:.1f}", f"{e.energy_sd_meV_per_atom:.2f}",
                         f"{e.energy_mean_meV_per_atom:+.2f}", stress])
        return rows


MARKDOWN_HEADER = ["frames", "model", "F RMSE vs reference (meV/Å)", "E SD vs reference (meV/atom)",
                   "E mean vs reference (meV/atom)", "stress RMSE (meV/Å³)"]


def reference_labels(
    reference: Potential,
    frames: "State | Trajectory | Sequence[Atoms]",
    stress: bool = True,
    batch_size: int = 1,
    source: str = "<reference>",
) -> DFTDataset:
    """``frames`` labelled with the reference potential's energies, forces and stress."""
    return label_with_potential(reference, _as_state(frames), batch_size=batch_size, stress=stress, source=source)


def compare_to_reference(
    models: Mapping[str, Potential],
    reference: Potential | DFTDataset,
    frames: "State | Trajectory | Sequence[Atoms] | None" = None,
    name: str = "frames",
    stress: bool = True,
    batch_size: int = 1,
) -> FrameSetComparison:
    """Each model's errors against the reference on the same frames.

    Args:
        models: name → potential (e.g. base, refined; the reference itself as a check gives zeros).
        reference: the reference potential, or frames already labelled with it
            (:func:`reference_labels`; then ``frames`` is not given).
        frames: the configurations (a batched State, a Trajectory or ASE Atoms).
        name: what the frames are, for tables.
        stress: compare stress too (periodic frames only).
        batch_size: frames per evaluation.
    """
    if isinstance(reference, DFTDataset):
        if frames is not None:
            raise ValueError("give frames only with a reference potential, not with labelled frames")
        labels = reference
    else:
        if frames is None:
            raise ValueError("frames are needed to label them with the reference potential")
        labels = reference_labels(reference, frames, stress=stress, batch_size=batch_size)
    errors = {key: evaluate_dft_errors(model, labels, batch_size=batch_size, stress=None if stress else False)
              for key, model in models.items()}
    return FrameSetComparison(name, labels.n_frames, int(labels.atoms_per_frame[0]), errors)


def recovered_fraction(base: DFTErrors, refined: DFTErrors) -> float:
    """1 − RMSE_F(refined)/RMSE_F(base), both against the reference: 1 when the refinement found the
    missing forces exactly, 0 when it left them as they were, negative when it made them worse."""
    if not base.force_rmse_meV_per_A > 0:
        raise ValueError("the base model has no force error against the reference: nothing to recover")
    return 1.0 - refined.force_rmse_meV_per_A / base.force_rmse_meV_per_A


def _as_state(frames: "State | Trajectory | Sequence[Atoms]") -> State:
    if isinstance(frames, State):
        return frames
    if isinstance(frames, Trajectory):
        return frames.as_state()
    return from_atoms(list(frames))
