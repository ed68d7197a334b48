"""Entry point of the ``exprefine`` console script."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from .. import __version__, workflows
from ..config import ConfigError, config_to_plain, load_config
from ..sampling import SimulationBlowUp
from ..workflows import RunDirectoryInUse


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="YAML configuration file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set refine.n_updates=10 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exprefine",
        description="Refine interatomic potentials against experimental data (DiffTRe).",
    )
    parser.add_argument("--version", action="version", version=f"exprefine {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("refine", help="refine the potential against the targets of CONFIG")
    _config_args(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    group.add_argument("--overwrite", action="store_true", help="start afresh in a run directory that has a checkpoint")

    p = sub.add_parser("train", help="fit the potential to the labelled frames of CONFIG's dft section")
    _config_args(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    group.add_argument("--overwrite", action="store_true", help="start afresh in a run directory that has a checkpoint")

    p = sub.add_parser("sample", help="run MD with the configured potential and compare with the targets")
    _config_args(p)

    p = sub.add_parser("evaluate", help="compare the targets with a checkpoint's MD, or with existing frames")
    _config_args(p)
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint or final_model.pt of a run")
    p.add_argument("--frames", type=Path, default=None,
                   help="evaluate these frames instead of sampling: a LAMMPS text dump, extxyz or ASE trajectory")
    p.add_argument("--type-map", nargs="+", default=None, metavar="ELEMENT",
                   help="elements of LAMMPS atom types 1, 2, ... (for dumps without an element column)")
    p.add_argument("--every", type=int, default=1, help="use every n-th frame of --frames")

    p = sub.add_parser("config", help="work with configuration files")
    csub = p.add_subparsers(dest="config_command", required=True)
    v = csub.add_parser("validate", help="check CONFIG and print the resolved configuration")
    v.add_argument("config", type=Path)
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    return parser


def _print_evaluation(title: str, evaluation) -> None:
    """RMSE of every target; scalar targets also with their value ± block standard error."""
    print(title)
    scalars = evaluation.scalars()
    for name, value in evaluation.rmse.items():
        line = f"  {name:20s} RMSE {value:.5f}"
        if name in scalars:
            line += f"   value {scalars[name]['value']:.6g} ± {scalars[name]['standard_error']:.2g}"
        print(line)


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.command == "config":
        print(yaml.safe_dump(config_to_plain(cfg), sort_keys=False), end="")
        print(f"{args.config}: valid")
        return 0

    progress = not args.no_progress
    if args.command == "refine":
        result = workflows.run_refinement(cfg, resume=args.resume, overwrite=args.overwrite, progress=progress)
        _print_evaluation("before refinement:", result.before)
        if result.after is not None:
            _print_evaluation("after refinement (independent check run):", result.after)
        if result.dft_before is not None:
            print(result.dft_before.format_table("held-out reference frames, before"))
        if result.dft_after is not None:
            print(result.dft_after.format_table("held-out reference frames, after"))
        print(f"{len(result.history)} updates, {result.n_samplings} trajectories, "
              f"{result.wall_time_s:.1f} s; results in {result.run_dir}")
        return 0
    if args.command == "train":
        report = workflows.run_training(cfg, resume=args.resume, overwrite=args.overwrite, progress=progress)
        if report.result.valid_after is not None:
            print(report.result.valid_after.format_table("validation frames"))
        if report.test_errors is not None:
            print(report.test_errors.format_table("test frames"))
        print(f"{len(report.result.history)} epochs in {report.result.wall_time_s:.1f} s; "
              f"results in {report.run_dir}")
        return 0
    if args.command == "evaluate" and args.frames is not None:
        frames = workflows.evaluate_frames(cfg, args.frames, type_map=args.type_map, checkpoint=args.checkpoint,
                                           every=args.every)
        print(f"{frames.n_frames} frames of {args.frames} -> {frames.out_dir}")
        _print_evaluation("targets:", frames.evaluation)
        return 0
    if args.command == "sample":
        sampled = workflows.run_sampling(cfg, progress=progress)
    else:
        if args.checkpoint is None:
            raise ValueError("evaluate needs --checkpoint (sample with its parameters) or --frames (existing frames)")
        sampled = workflows.run_evaluation(cfg, args.checkpoint, progress=progress)
    print(f"{sampled.result.trajectory.n_frames} frames in {sampled.result.wall_time_s:.1f} s "
          f"-> {sampled.out_dir / 'trajectory.pt'}")
    if sampled.evaluation is not None:
        _print_evaluation("targets:", sampled.evaluation)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors for bad input, exit codes 2 (input) and 3 (simulation)."""
    try:
        code = run(argv)
    except (ConfigError, ValueError, FileNotFoundError, RunDirectoryInUse) as exc:
        print(f"exprefine: error: {exc}", file=sys.stderr)
        code = 2
    except SimulationBlowUp as exc:
        print(f"exprefine: simulation failed: {exc}", file=sys.stderr)
        code = 3
    except KeyboardInterrupt:
        print("exprefine: interrupted; finished updates are in the last checkpoint (use --resume)", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
