"""Does LAMMPS sample the refined model's ensemble? A LAMMPS dump against exprefine's own frames.

The targets of CONFIG (S(Q), G(r), ...) and the interlayer spacing are averaged over the LAMMPS
frames and over exprefine's frames of the same model and state point;
:func:`exprefine.ensemble_comparison.compare_ensembles` gives, per target, mean z² with the two
runs' block standard errors (≈ 1 for the same ensemble) and mean ((LAMMPS − exprefine)/σ_data)².

    python examples/lammps/compare_with_exprefine.py examples/gcn/strategy_b_spline.yaml \\
        --lammps runs/lammps_gcn_b/gcn_npt.dump \\
        --exprefine examples/gcn/results/strategies/md/b_spline_check.pt --layers 6 \\
        --out examples/lammps/results/gcn_b_spline.json
    python examples/lammps/compare_with_exprefine.py --smoke   # seconds: two halves of one exprefine run

exprefine's frames can be made here too, with ``--sample-ps`` (production ps after 1 ps of
equilibration, a frame every 50 fs, the config's thermostat, barostat and state point; the
refined parameters from ``--checkpoint``): the run goes in resumable segments beside the
``--exprefine`` file, so the same command continues a run that was stopped:

    python examples/lammps/compare_with_exprefine.py examples/gcn/strategy_b_spline.yaml \
        --checkpoint examples/gcn/runs/strategies/b_spline/final_model.pt --sample-ps 20 \
        --exprefine examples/gcn/results/strategies/md/b_spline_20ps.pt --lammps runs/lammps_gcn_b/gcn_npt.dump
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SMOKE_CONFIG = REPO / "examples" / "gcn" / "strategy_b_spline.yaml"
SMOKE_FRAMES = REPO / "examples" / "gcn" / "results" / "strategies" / "md" / "b_spline_check.pt"


def spacing(trajectory, n_layers: int) -> tuple[float, float]:
    """Mean interlayer spacing (Å) and its block standard error."""
    from exprefine.blocking import mean_and_standard_error
    from exprefine.observables import InterlayerSpacing

    return mean_and_standard_error(InterlayerSpacing(n_layers).evaluate(trajectory))


def sample_exprefine(cfg, args) -> None:
    """exprefine's own NPT run of the config's potential (with ``--checkpoint``'s parameters) at
    ``--exprefine``, in resumable segments; an existing file made the same way is kept."""
    from exprefine.builders import build_potential, build_state, load_potential_state, sampler_settings
    from exprefine.sampling import sample_or_load, segment_steps_of

    potential = build_potential(cfg)
    if args.checkpoint is not None:
        load_potential_state(potential, args.checkpoint)
    settings = sampler_settings(cfg.sampling.model_copy(update={
        "equilibration_ps": 1.0, "production_ps": args.sample_ps, "frame_interval_fs": 50.0, "seed": args.seed}))
    run = sample_or_load(potential, build_state(cfg), settings, args.exprefine,
                         segment_steps=segment_steps_of(settings, args.segment_ps), log=print)
    print(f"exprefine: {run.trajectory.n_frames} frames, {run.steps_per_s:.2f} steps/s"
          f"{' (cached)' if run.reused else ''}", flush=True)


def relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", type=Path, default=SMOKE_CONFIG, help="the refinement's config (targets)")
    parser.add_argument("--lammps", type=Path, help="LAMMPS text dump with an element column")
    parser.add_argument("--exprefine", type=Path, default=SMOKE_FRAMES, help="exprefine's frames of the same model (.pt)")
    parser.add_argument("--layers", type=int, default=6, help="layers in the cell (for the spacing)")
    parser.add_argument("--every", type=int, default=1, help="use every n-th LAMMPS frame")
    parser.add_argument("--skip-ps", type=float, default=0.0,
                        help="leave out the frames of both runs before this time (ps; more equilibration)")
    parser.add_argument("--out", type=Path, default=None, help="JSON of the comparison")
    parser.add_argument("--smoke", action="store_true", help="compare the two halves of the exprefine run (no LAMMPS)")
    parser.add_argument("--sample-ps", type=float, default=None,
                        help="first make --exprefine: this many ps of production with the config's potential")
    parser.add_argument("--checkpoint", type=Path, default=None, help="with --sample-ps: the refined parameters")
    parser.add_argument("--segment-ps", type=float, default=1.0, help="with --sample-ps: ps per resumable segment")
    parser.add_argument("--seed", type=int, default=102, help="with --sample-ps: seed of the random stream")
    args = parser.parse_args(argv)

    import torch

    from exprefine.builders import build_potential, build_targets
    from exprefine.config import load_config
    from exprefine.ensemble_comparison import compare_ensembles
    from exprefine.io.lammps import read_lammps_dump
    from exprefine.refine.curves import target_curves
    from exprefine.refine.plots import plot_curves
    from exprefine.trajectory import Trajectory

    torch.set_num_threads(1)
    cfg = load_config(args.config)
    if args.sample_ps is not None:
        sample_exprefine(cfg, args)
    theirs = Trajectory.load(args.exprefine)
    if args.smoke:
        half = theirs.n_frames // 2
        ours, theirs = theirs.select(slice(0, half)), theirs.select(slice(half, 2 * half))
        source = f"first half of {relative(args.exprefine)}"
    else:
        if args.lammps is None:
            if args.sample_ps is not None:  # only exprefine's frames, for a comparison later
                return {}
            parser.error("--lammps DUMP is needed (or --smoke)")
        ours = read_lammps_dump(args.lammps, temperature_K=cfg.sampling.temperature_K, every=args.every)
        source = relative(args.lammps)
    if args.skip_ps > 0:
        ours, theirs = (t.select(t.time_fs >= 1000.0 * args.skip_ps) for t in (ours, theirs))
        if min(ours.n_frames, theirs.n_frames) < 4:
            parser.error(f"--skip-ps {args.skip_ps} leaves fewer than 4 frames in a run")
    targets = build_targets(cfg)
    result = compare_ensembles(targets, ours, theirs, build_potential(cfg))
    d_ours, d_theirs = spacing(ours, args.layers), spacing(theirs, args.layers)
    record = {
        "config": relative(args.config), "lammps_frames": source, "exprefine_frames": relative(args.exprefine),
        "n_frames_lammps": result.n_frames_a, "n_frames_exprefine": result.n_frames_b, "skip_ps": args.skip_ps,
        "targets": [asdict(t) for t in result.targets],
        "spacing_A": {"lammps": d_ours[0], "lammps_se": d_ours[1], "exprefine": d_theirs[0], "exprefine_se": d_theirs[1],
                      "z": (d_ours[0] - d_theirs[0]) / max(1e-12, (d_ours[1] ** 2 + d_theirs[1] ** 2) ** 0.5)},
    }
    print(f"frames: LAMMPS {result.n_frames_a} ({source}), exprefine {result.n_frames_b}")
    print("| target | points | mean z² (block SE) | mean ((L − e)/σ_data)² | max abs difference |")
    print("|---|---|---|---|---|")
    for t in result.targets:
        print(f"| {t.name} | {t.n_points} | {t.mean_z2_statistical:.2f} | {t.mean_z2_data_sigma:.3f} | "
              f"{t.max_abs_difference:.4f} |")
    s = record["spacing_A"]
    print(f"spacing: LAMMPS {s['lammps']:.4f} ± {s['lammps_se']:.4f} Å, exprefine {s['exprefine']:.4f} ± "
          f"{s['exprefine_se']:.4f} Å (z = {s['z']:.2f})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        # each target of both runs against the data, beside the JSON: OUT_STEM_<target>.png
        curves = target_curves(targets, [("LAMMPS", result.evaluation_a), ("exprefine", result.evaluation_b)])
        record["plots"] = [relative(p) for p in plot_curves(curves, args.out.parent, prefix=f"{args.out.stem}_")]
        args.out.write_text(json.dumps(record, indent=1) + "\n")
    return record


if __name__ == "__main__":
    main()
