"""What the g-C3N4 scripts share: the measured spacing, process set-up, paths, spacing and density.

Generic pieces live in the package (``exprefine.sampling.sample_or_load``,
``Trajectory.select``/``concatenate``, ``exprefine.closed_loop``, ``exprefine.binding_curve``);
this module holds only what is particular to this study.
"""

from __future__ import annotations

import os
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

#: the measured interlayer spacing of g-C3N4, Å: XRD (002) at 2θ ≈ 27.4–27.6° with Cu Kα (data/README.md)
MEASURED_SPACING_A = (3.22, 3.25)
MEASURED_SPACING_LABEL = "measured 3.22–3.25 Å"


def setup(threads: int) -> None:
    """Threads for OpenMP and torch, before torch does any work; and the environment DeePMD-kit's
    own tools need in this process (``deepmd.calculator.DP`` and ``dp`` import e3nn 0.4.4, whose
    import-time ``torch.load`` torch ≥ 2.6 refuses without it; exprefine's own adapters need nothing)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    import torch

    torch.set_num_threads(threads)


def relative_to_repo(path: str | Path) -> str:
    """``path`` relative to the repository (results record no machine's absolute paths)."""
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def spacing_and_density(trajectory, n_layers: int = 2) -> tuple[float, float, float, float]:
    """Mean ± block SE of the interlayer spacing d (Å) and of the density (g/cm³) over the stored
    frames (exprefine's ``InterlayerSpacing`` and ``Density`` observables)."""
    from exprefine.blocking import mean_and_standard_error
    from exprefine.observables import Density, InterlayerSpacing

    d = mean_and_standard_error(InterlayerSpacing(n_layers).evaluate(trajectory))
    density = mean_and_standard_error(Density().evaluate(trajectory))
    return (*d, *density)


def run_potential(run: Path):
    """The potential of a refinement run: its resolved config's terms with the parameters of final_model.pt."""
    from exprefine.builders import build_potential, load_potential_state
    from exprefine.config import load_config

    potential = build_potential(load_config(run / "config.yaml"))
    load_potential_state(potential, run / "final_model.pt")
    return potential
