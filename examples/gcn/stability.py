"""Long NPT stability run of a g-C3N4 model (issue 6: stable MD for ≥ 100 ps on the largest cell).

    python examples/gcn/stability.py --model examples/gcn/runs/refine_deepmd/refined_deepmd.pt \
        --size 4x4 --total-ps 100 --tag refined_deepmd_4x4
    # → results/stability/<tag>/segments.json, stability.png (committed); MD state in runs/stability/<tag>/
    python examples/gcn/stability.py --run examples/gcn/runs/strategies/h3_long_polish --size 4x4 --summary
    # → d range and halves, energy span, closest pair of the segments so far (also printed at the end)

BAOAB Langevin at 300 K with the stochastic cell-rescaling barostat at 1 bar (c free, a and b
fixed: ``uniaxial_z``, as in transferability.py), on the AB bilayer of the given in-plane
supercell. The run goes in segments of ``--segment-ps``; after each one the exact MD state
(positions, velocities, cell, forces, step) and the random stream are saved, so a killed run
resumes where it stopped and gives the same trajectory as an uninterrupted one. Every segment
adds a row to ``segments.json``: mean interlayer spacing and density, mean and extreme potential
energy per atom, the smallest interatomic distance over its frames, speed. exprefine's sampler
stops with SimulationBlowUp on non-finite values, a temperature above 3× the target or two atoms
closer than 0.5 Å; then the failure is recorded and the script exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from common import relative_to_repo, run_potential, setup

HERE = Path(__file__).resolve().parent


#: what --smoke sets
SMOKE = {"size": "1x1", "total_ps": 0.02, "segment_ps": 0.01, "equilibration_ps": 0.01, "frame_interval_fs": 5.0,
         "no_progress": True}


@dataclass
class Segment:
    """One finished segment of the stability run."""

    index: int
    end_time_ps: float
    spacing_A: float
    density_g_per_cm3: float
    energy_mean_eV_per_atom: float
    energy_min_eV_per_atom: float
    energy_max_eV_per_atom: float
    min_distance_A: float
    steps_per_s: float


@dataclass
class RunSummary:
    """The figures a report quotes of a run's segments (finished or not).

    Attributes:
        spacing_first_half_A, spacing_second_half_A: mean d of the first and the second half of
            the segments (the first gets the middle one of an odd count): a drift shows as their difference.
        energy_span_meV_per_atom: lowest and highest segment mean energy per atom, relative to the first segment's.
        min_distance_A: the closest pair over every frame of every segment.
    """

    n_segments: int
    end_time_ps: float
    spacing_min_A: float
    spacing_max_A: float
    spacing_first_half_A: float
    spacing_second_half_A: float
    energy_span_meV_per_atom: tuple[float, float]
    min_distance_A: float
    steps_per_s_range: tuple[float, float]

    def line(self) -> str:
        lo, hi = self.energy_span_meV_per_atom
        return (f"{self.n_segments} segments, {self.end_time_ps:.1f} ps: d per segment {self.spacing_min_A:.3f}–"
                f"{self.spacing_max_A:.3f} Å (halves {self.spacing_first_half_A:.3f} / {self.spacing_second_half_A:.3f}), "
                f"mean E per segment {lo:+.1f} … {hi:+.1f} meV/atom from the first's, closest pair "
                f"{self.min_distance_A:.3f} Å, {self.steps_per_s_range[0]:.1f}–{self.steps_per_s_range[1]:.1f} steps/s")


def summarise_run(segments: list[Segment]) -> RunSummary:
    """:class:`RunSummary` of at least one segment."""
    if not segments:
        raise ValueError("no segments to summarise")
    d = [s.spacing_A for s in segments]
    half = (len(d) + 1) // 2
    e = [1000.0 * (s.energy_mean_eV_per_atom - segments[0].energy_mean_eV_per_atom) for s in segments]
    speed = [s.steps_per_s for s in segments]
    return RunSummary(
        n_segments=len(segments), end_time_ps=segments[-1].end_time_ps, spacing_min_A=min(d), spacing_max_A=max(d),
        spacing_first_half_A=sum(d[:half]) / half,
        spacing_second_half_A=sum(d[half:]) / max(len(d) - half, 1) if len(d) > 1 else d[0],
        energy_span_meV_per_atom=(min(e), max(e)), min_distance_A=min(s.min_distance_A for s in segments),
        steps_per_s_range=(min(speed), max(speed)),
    )


def parse_size(text: str) -> tuple[int, int]:
    try:
        n1, n2 = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"stability.py: --size must look like 4x4, not {text!r}") from None
    return n1, n2


def recorded_settings(settings: dict) -> dict:
    """The settings a run is recorded and resumed by: with ``run`` given, ``model`` (then unused) is left out."""
    return {k: v for k, v in settings.items() if not (k == "model" and settings.get("run") is not None)}


def settings(args, first: bool, seed: int):
    from exprefine.sampling import BarostatSettings, SamplerSettings

    return SamplerSettings(
        integrator="baoab", temperature_K=args.temperature_K, timestep_fs=args.timestep_fs,
        friction_per_ps=args.friction_per_ps,
        n_equilibration_steps=int(round(args.equilibration_ps * 1000 / args.timestep_fs)) if first else 0,
        n_production_steps=int(round(args.segment_ps * 1000 / args.timestep_fs)),
        stride_steps=int(round(args.frame_interval_fs / args.timestep_fs)), seed=seed,
        barostat=BarostatSettings(pressure_bar=args.pressure_bar, time_fs=args.barostat_time_fs,
                                  coupling="uniaxial_z"),
    )


def min_distance_A(trajectory, cutoff_A: float = 2.0) -> float:
    """Smallest interatomic distance (Å) over all frames (minimum image; ``cutoff_A`` if none shorter)."""
    from exprefine.neighbors import build_pairs

    state = trajectory.as_state()
    pairs = build_pairs(state, cutoff_A)
    if not pairs.n_pairs:
        return cutoff_A
    return float(pairs.vectors(state.positions, state.cell).norm(dim=-1).min())


def summarise(index: int, trajectory, steps_per_s: float) -> Segment:
    from exprefine.observables import Density, InterlayerSpacing

    e = trajectory.energies_eV.double() / trajectory.n_atoms
    return Segment(
        index=index, end_time_ps=float(trajectory.time_fs[-1]) / 1000.0,
        spacing_A=float(InterlayerSpacing(2).evaluate(trajectory).double().mean()),
        density_g_per_cm3=float(Density().evaluate(trajectory).double().mean()),
        energy_mean_eV_per_atom=float(e.mean()), energy_min_eV_per_atom=float(e.min()),
        energy_max_eV_per_atom=float(e.max()), min_distance_A=min_distance_A(trajectory), steps_per_s=steps_per_s,
    )


def plot(path: Path, segments: list[Segment], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.end_time_ps for s in segments]
    fig, axes = plt.subplots(1, 3, figsize=(12.0, 3.3))
    axes[0].plot(t, [s.spacing_A for s in segments], "o-", ms=3)
    axes[0].axhspan(3.22, 3.25, color="0.8", lw=0, label="measured")
    axes[0].set_ylabel("mean d per segment (Å)")
    axes[0].legend(fontsize=7)
    axes[1].plot(t, [1000 * (s.energy_mean_eV_per_atom - segments[0].energy_mean_eV_per_atom) for s in segments],
                 "o-", ms=3)
    axes[1].set_ylabel("mean E − first (meV/atom)")
    axes[2].plot(t, [s.min_distance_A for s in segments], "o-", ms=3)
    axes[2].set_ylabel("closest pair (Å)")
    for ax in axes:
        ax.set_xlabel("time (ps)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=HERE / "models" / "base_deepmd.pt",
                   help="MACE .model or DeePMD .pt/.pth file")
    p.add_argument("--size", default="4x4", help="in-plane supercell of the AB bilayer (4x4 = 448 atoms)")
    p.add_argument("--total-ps", type=float, default=100.0)
    p.add_argument("--segment-ps", type=float, default=5.0)
    p.add_argument("--equilibration-ps", type=float, default=2.0, help="before the first segment")
    p.add_argument("--start-spacing-A", type=float, default=3.4)
    p.add_argument("--temperature-K", type=float, default=300.0)
    p.add_argument("--pressure-bar", type=float, default=1.0)
    p.add_argument("--timestep-fs", type=float, default=1.0)
    p.add_argument("--friction-per-ps", type=float, default=5.0)
    p.add_argument("--barostat-time-fs", type=float, default=500.0)
    p.add_argument("--frame-interval-fs", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--concurrent-terms", action="store_true",
                   help="evaluate the model's terms (e.g. DeePMD and D3) side by side, one thread each; with "
                        "--threads 1 on a 2-core machine (benchmarks/concurrent_terms.py)")
    p.add_argument("--tag", default=None, help="output folder name (default: model stem and size)")
    p.add_argument("--out", type=Path, default=HERE / "results" / "stability")
    p.add_argument("--work", type=Path, default=HERE / "runs" / "stability")
    p.add_argument("--run", type=Path, default=None,
                   help="a refinement run folder instead of --model: its config's potential with final_model.pt "
                        "(e.g. a frozen base model plus a learned pair correction)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--summary", action="store_true", help="print the summary of the segments run so far and stop")
    p.add_argument("--smoke", action="store_true", help="the 28-atom 1×1 bilayer for two tiny segments (seconds; for tests)")
    args = p.parse_args(argv)
    if args.smoke:  # the smoke values where the command line gives none
        p.set_defaults(**SMOKE)
        args = p.parse_args(argv)
    setup(args.threads)
    import torch

    from exprefine.potentials import SumPotential, load_model_file
    from exprefine.sampling import SimulationBlowUp, sample
    from exprefine.state import from_atoms
    from exprefine.structures import gcn_stack

    size = parse_size(args.size)
    name = args.run.name if args.run is not None else args.model.stem
    tag = args.tag or f"{name}_{args.size}"
    out, work = args.out / tag, args.work / tag
    log_path = out / "segments.json"
    if args.summary:  # whatever settings the run had
        if not log_path.exists():
            print(f"stability.py: no run {log_path}", file=sys.stderr)
            return 1
        done = [Segment(**s) for s in json.loads(log_path.read_text())["segments"]]
        print(f"{tag}: {summarise_run(done).line()}" if done else f"{tag}: no segments yet")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    # how the forces are computed is not part of what is simulated: a run may resume with other values
    run_settings = {k: v for k, v in vars(args).items() if k not in ("threads", "concurrent_terms", "no_progress",
                                                                      "out", "work", "tag", "total_ps", "summary")}
    run_settings = recorded_settings({k: relative_to_repo(v) if isinstance(v, Path) else v
                                      for k, v in run_settings.items()})
    log = json.loads(log_path.read_text()) if log_path.exists() else {"settings": run_settings, "segments": []}
    if recorded_settings(log["settings"]) != run_settings:
        print(f"stability.py: {log_path} was run with other settings ({log['settings']}); use another --tag",
              file=sys.stderr)
        return 1
    log["settings"] = run_settings  # a log written before ``recorded_settings`` existed loses its unused model
    segments = [Segment(**s) for s in log["segments"]]
    potential = run_potential(args.run) if args.run is not None else load_model_file(args.model)
    if args.concurrent_terms:
        if not isinstance(potential, SumPotential):
            print(f"stability.py: --concurrent-terms needs a model of several terms, not {type(potential).__name__}",
                  file=sys.stderr)
            return 2
        potential.concurrent = True
    n_segments = int(round(args.total_ps / args.segment_ps))
    state_path = work / "md_state.pt"
    if segments:
        saved = torch.load(state_path, weights_only=False)
        if saved["segment"] != len(segments) - 1:
            print(f"stability.py: {state_path} does not belong to segment {len(segments) - 1}", file=sys.stderr)
            return 1
        md, generator = saved["md"], torch.Generator()
        generator.set_state(saved["generator"])
    else:
        md = from_atoms(gcn_stack(2, "AB", args.start_spacing_A, supercell=size), dtype=torch.float64)
        generator = torch.Generator().manual_seed(args.seed)
    print(f"{tag}: {n_segments} segments of {args.segment_ps} ps, {len(segments)} done", flush=True)
    for k in range(len(segments), n_segments):
        try:
            result = sample(potential, md, settings(args, k == 0, args.seed), generator=generator,
                            progress=not args.no_progress)
        except SimulationBlowUp as exc:
            log["failure"] = {"segment": k, "message": str(exc)}
            log_path.write_text(json.dumps(log, indent=1))
            print(f"stability.py: segment {k} blew up: {exc}", file=sys.stderr)
            return 1
        md = result.final
        segments.append(summarise(k, result.trajectory, result.n_steps / result.wall_time_s))
        torch.save({"segment": k, "md": md, "generator": generator.get_state()}, state_path)
        log["segments"] = [asdict(s) for s in segments]
        log_path.write_text(json.dumps(log, indent=1))
        plot(out / "stability.png", segments, f"{name}, {args.size} AB bilayer "
             f"({result.trajectory.n_atoms} atoms), NPT {args.temperature_K:g} K / {args.pressure_bar:g} bar")
        s = segments[-1]
        print(f"segment {k}: t = {s.end_time_ps:.2f} ps, d = {s.spacing_A:.3f} Å, ρ = {s.density_g_per_cm3:.3f} g/cm³, "
              f"closest pair {s.min_distance_A:.3f} Å, {s.steps_per_s:.1f} steps/s", flush=True)
    print(f"{tag}: {summarise_run(segments).line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
