"""MD and refinement-update speed of MACE and DeePMD by system size, on CPU or a GPU (prints figures).

For the small MACE (float32) and DeePMD se_e2_a (float64) models of ``bench_mlip.py`` (random,
scaled-down weights; C/N), on AB g-C3N4 bilayers of about ``--sizes`` atoms (28 atoms per in-plane
cell; 1,000 → 6×6 = 1,008 atoms, 10,000 → 19×19 = 10,108, 50,000 → 42×42 = 49,392), it measures:

  * MD steps/s of one system (BAOAB, 0.5 fs, 300 K, Verlet-skin neighbour list);
  * ``--replicas`` copies of the system in one batch: system-steps/s (what a DiffTRe trajectory
    gathers its frames with);
  * the wall time of one refinement update: sampling ``--steps`` MD steps that store ``--frames``
    frames, the energy pass over those frames and the chunked loss + gradient pass over all
    trainable parameters (a total g(r) target), as the refiner does each time a state point is
    resampled.

Times are taken with ``torch.cuda.synchronize()`` around every timed region on a GPU. A size that
runs out of GPU memory is reported as such and the next one is tried. Compare with the same script
run with ``--device cpu`` on the same machine (on a GPU machine run both in one job).

Run:  python benchmarks/gpu_md.py --device cuda                          # 1k, 10k, 50k atoms
      python benchmarks/gpu_md.py --device cpu --sizes 100 --steps 5      # CPU smoke (seconds)

The CUDA path has not been run on a GPU yet (no session has had one); it was checked by reading.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from bench_mlip import FRICTION_PER_PS, TEMPERATURE_K, TIMESTEP_FS, Models, exprefine_potential, write_models

from exprefine.neighbors import cell_heights_A
from exprefine.observables import RadialDistribution
from exprefine.potentials import Potential
from exprefine.reweighting import frame_energies, reweighted_loss_and_gradient
from exprefine.sampling import SamplerSettings, sample
from exprefine.state import State, from_atoms, replicate
from exprefine.structures import gcn_stack
from exprefine.trajectory import Trajectory

ATOMS_PER_CELL = 28
CHUNK_FRAMES = 4
MD_DTYPES = {"mace": torch.float32, "deepmd": torch.float64}


@dataclass
class SizeFigures:
    """One model at one system size on one device (times in s; None where it ran out of memory)."""

    model: str
    device: str
    n_atoms: int
    md_steps_per_s: float | None
    replicas: int
    batched_system_steps_per_s: float | None
    update_md_s: float | None
    update_energies_s: float | None
    update_gradient_s: float | None
    update_total_s: float | None
    n_frames: int
    n_parameters: int
    note: str = ""


def cells_for(n_atoms: int) -> int:
    """In-plane supercell n of the n×n AB bilayer closest to ``n_atoms`` atoms (at least 1)."""
    return max(1, round(math.sqrt(n_atoms / ATOMS_PER_CELL)))


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a host clock brackets it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_sample(potential: Potential, state: State, settings: SamplerSettings, device: torch.device
                 ) -> tuple[float, Trajectory]:
    """Wall time (s) of one sampling run, GPU work included, and its trajectory."""
    synchronize(device)
    t = time.perf_counter()
    result = sample(potential, state, settings, progress=False)
    synchronize(device)
    return time.perf_counter() - t, result.trajectory


def total_rdf(trajectory: Trajectory) -> RadialDistribution:
    """A total g(r) up to just below half the smallest cell height (at most 8 Å)."""
    smallest = float(min(cell_heights_A(trajectory.cells_A[0].double().cpu().numpy())))
    return RadialDistribution(r_max_A=min(8.0, 0.1 * int(4.9 * smallest)), r_min_A=0.8, bin_width_A=0.05)


def update_seconds(potential: Potential, trajectory: Trajectory, device: torch.device) -> tuple[float, float]:
    """Wall time (s) of the energy pass and of the loss + gradient pass over ``trajectory``."""
    rdf = total_rdf(trajectory)
    static = rdf.evaluate(trajectory).double()
    reference = static.mean(0) * 1.02
    synchronize(device)
    t = time.perf_counter()
    frame_energies(potential, trajectory, chunk_size=CHUNK_FRAMES)
    synchronize(device)
    t_energies = time.perf_counter() - t
    potential.zero_grad(set_to_none=True)
    t = time.perf_counter()
    reweighted_loss_and_gradient(potential, trajectory, [rdf], [static], _LossAgainst(reference),
                                 chunk_size=CHUNK_FRAMES)
    synchronize(device)
    return t_energies, time.perf_counter() - t


@dataclass
class _LossAgainst:
    """Mean squared deviation of the first prediction from ``reference``."""

    reference: torch.Tensor

    def __call__(self, predictions: list[torch.Tensor]) -> torch.Tensor:
        return ((predictions[0] - self.reference) ** 2).mean()


def md_settings(n_steps: int, n_frames: int) -> SamplerSettings:
    stride = max(1, n_steps // max(1, n_frames))
    return SamplerSettings(temperature_K=TEMPERATURE_K, timestep_fs=TIMESTEP_FS, friction_per_ps=FRICTION_PER_PS,
                           n_equilibration_steps=0, n_production_steps=stride * max(1, n_steps // stride),
                           stride_steps=stride, seed=0, max_temperature_factor=50.0)


def bench_size(kind: str, models: Models, n_atoms: int, n_steps: int, n_frames: int, replicas: int,
               device: torch.device) -> SizeFigures:
    """Every figure of one model at one size; out-of-memory on the GPU gives a row with a note."""
    atoms = gcn_stack(2, "AB", 3.3, supercell=(cells_for(n_atoms), cells_for(n_atoms)))
    potential = exprefine_potential(kind, models).to(device)
    n_params = sum(p.numel() for p in potential.parameters() if p.requires_grad)
    state = from_atoms(atoms, dtype=MD_DTYPES[kind]).to(device=device)
    settings = md_settings(n_steps, n_frames)
    figures = SizeFigures(kind, str(device), len(atoms), None, replicas, None, None, None, None, None, 0, n_params)
    try:
        timed_sample(potential, state, replace(settings, n_production_steps=2, stride_steps=1), device)  # warm-up
        t_md, trajectory = timed_sample(potential, state, settings, device)
        figures.md_steps_per_s = settings.n_production_steps / t_md
        figures.update_md_s, figures.n_frames = t_md, trajectory.n_frames
        figures.update_energies_s, figures.update_gradient_s = update_seconds(potential, trajectory, device)
        figures.update_total_s = t_md + figures.update_energies_s + figures.update_gradient_s
        del trajectory
        if replicas > 1:
            t_batch, _ = timed_sample(potential, replicate(state, replicas), settings, device)
            figures.batched_system_steps_per_s = replicas * settings.n_production_steps / t_batch
    except torch.cuda.OutOfMemoryError:
        figures.note = "out of GPU memory"
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return figures


def _number(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def format_row(f: SizeFigures) -> str:
    return (f"{f.model:6s} {f.device:6s} N = {f.n_atoms:6d}: MD {_number(f.md_steps_per_s, '8.2f')} steps/s | "
            f"{f.replicas} replicas {_number(f.batched_system_steps_per_s, '8.2f')} system-steps/s | update "
            f"{_number(f.update_total_s, '8.2f')} s (MD {_number(f.update_md_s, '.2f')} s, energies "
            f"{_number(f.update_energies_s, '.2f')} s, loss+gradient {_number(f.update_gradient_s, '.2f')} s; "
            f"{f.n_frames} frames, {f.n_parameters} parameters)" + (f"  [{f.note}]" if f.note else ""))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mace", "deepmd"], choices=["mace", "deepmd"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 50000], help="approximate atoms")
    parser.add_argument("--steps", type=int, default=50, help="MD steps per timed run (and per update)")
    parser.add_argument("--frames", type=int, default=10, help="frames stored per update")
    parser.add_argument("--replicas", type=int, default=4, help="replicas in one batch (1: skip)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--json", type=Path, default=None, help="also write every row to this JSON file")
    return parser


def main(argv: list[str] | None = None) -> list[SizeFigures]:
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_md.py: --device cuda but torch sees no CUDA device")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"torch {torch.__version__} on {args.device} ({where}), {args.threads} CPU thread(s), load average "
          f"{os.getloadavg()[0]:.2f}; BAOAB {TIMESTEP_FS} fs at {TEMPERATURE_K} K, {args.steps} steps, "
          f"{args.frames} frames per update", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = write_models(Path(tmp))
        for kind in args.models:
            for size in args.sizes:
                row = bench_size(kind, models, size, args.steps, args.frames, args.replicas, device)
                print(format_row(row), flush=True)
                rows.append(row)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
