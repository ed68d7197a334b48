"""Entry point of the ``exprefine`` console script."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import yaml

from .. import __version__, workflows
from ..config import ConfigError, config_to_plain, load_config
from ..inputs import check_inputs
from ..quiet import silence_dependency_noise, warning_line
from ..refine import RefinerSettings
from ..refine.collective import RankLost, launched_distributed
from ..report import write_report
from ..sampling import SimulationBlowUp
from ..workflows import RunDirectoryInUse
from . import lammps as lammps_cli
from .console import parameters_table, targets_table, wall_time_text


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", type=Path, help="YAML configuration file")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set refine.n_updates=10 (repeatable)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars: one plain line per update instead (the default when stderr is not a terminal)")


def _segment_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--segment-ps", type=float, default=None, metavar="PS",
                   help="run the MD in resumable segments of about PS ps (in the output folder's segments/): "
                        "the same command continues a stopped run")


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
    p.add_argument("--segment-ps", type=float, default=None, metavar="PS",
                   help="run every MD sampling in resumable segments of about PS ps (refine.segment_ps; "
                        "run_dir/md_segments/): --resume continues inside a stopped sampling")

    p = sub.add_parser("train", help="fit the potential to the labelled frames of CONFIG's dft section")
    _config_args(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true", help="continue from the run directory's last checkpoint")
    group.add_argument("--overwrite", action="store_true", help="start afresh in a run directory that has a checkpoint")

    p = sub.add_parser("sample", help="run MD with the configured potential and compare with the targets")
    _config_args(p)
    _segment_arg(p)

    p = sub.add_parser("evaluate", help="compare the targets with a checkpoint's MD, or with existing frames")
    _config_args(p)
    p.add_argument("--checkpoint", type=Path, default=None, help="checkpoint or final_model.pt of a run")
    _segment_arg(p)
    p.add_argument("--frames", type=Path, default=None,
                   help="evaluate these frames instead of sampling: a LAMMPS text dump, extxyz, ASE trajectory or "
                        "exprefine trajectory (.pt)")
    p.add_argument("--type-map", nargs="+", default=None, metavar="ELEMENT",
                   help="elements of LAMMPS atom types 1, 2, ... (for dumps without an element column)")
    p.add_argument("--every", type=int, default=1, help="use every n-th frame of --frames")
    p.add_argument("--state-point", default=None, metavar="NAME",
                   help="with --frames and a systems: config, the state point the frames belong to")
    p.add_argument("--sampled-with", default=None, metavar="CHECKPOINT",
                   help="with --frames: the frames were sampled with this checkpoint's parameters ('config': the "
                        "configured potential's own); the averages are reweighted to --checkpoint's, with N_eff/N")

    p = sub.add_parser("config", help="work with configuration files")
    csub = p.add_subparsers(dest="config_command", required=True)
    v = csub.add_parser("validate", help="check CONFIG and every file it names (data columns, fit ranges, units, "
                                         "elements) without running anything; print the resolved configuration")
    v.add_argument("config", type=Path)
    v.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    v.add_argument("--quiet", action="store_true", help="print only the verdict and notes, not the resolved config")

    p = sub.add_parser("report", help="write one markdown report (with figures) of a refine, sample or evaluate run")
    p.add_argument("run_dir", type=Path, help="a run directory (refine), or its sample/, evaluate/ or evaluate_frames/")
    p.add_argument("--out", type=Path, default=None, help="folder of the report (default RUN_DIR/report)")
    p.add_argument("--embed", action="store_true",
                   help="embed the figures in report.md as data URIs (one file; not every viewer shows them)")
    lammps_cli.add_parser(sub)
    return parser


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "lammps":
        return lammps_cli.run(args)
    if args.command == "report":
        path = write_report(args.run_dir, out_dir=args.out, embed=args.embed)
        print(f"report: {path}")
        return 0
    overrides = list(args.overrides)
    if args.command == "refine" and args.segment_ps is not None:
        overrides.append(f"refine.segment_ps={args.segment_ps}")
    cfg = load_config(args.config, overrides)
    if args.command == "config":
        check = check_inputs(cfg, str(args.config))
        if not args.quiet:
            print(yaml.safe_dump(config_to_plain(cfg), sort_keys=False), end="")
        for note in check.notes:
            print(f"note: {args.config}: {note}")
        system = ", ".join(f"{el} {n}" for el, n in check.elements.items())
        files = "; ".join(f"{name} ({n} points)" for name, n in check.data_files.items())
        print(f"{args.config}: valid (system: {system}" + (f"; data: {files}" if files else "") + ")")
        return 0

    bars = not args.no_progress and sys.stderr.isatty()
    if args.command == "refine" and launched_distributed():
        signal.signal(signal.SIGTERM, _stopped_by_launcher)
    if args.command == "refine":
        result = workflows.run_refinement(cfg, resume=args.resume, overwrite=args.overwrite, progress=bars,
                                          progress_lines=not bars)
        if launched_distributed() and os.environ.get("RANK", "0") != "0":
            return 0  # rank 0 reports
        print("targets, before and after refinement (after: an independent check run):"
              if result.after is not None else "targets before refinement:")
        print(targets_table(result.before, result.after))
        if result.final_check_note is not None:
            print(f"  note: {result.final_check_note}")
        start = dict(result.history[0].parameters) if result.history else {}
        table = parameters_table(start, result.parameters)
        if table:
            print("parameters:")
            print(table)
        if result.dft_before is not None:
            print(result.dft_before.format_table("held-out reference frames, before"))
        if result.dft_after is not None:
            print(result.dft_after.format_table("held-out reference frames, after"))
        rejected = sum(not r.accepted for r in result.history)
        rollbacks = sum(r.rollbacks for r in result.history)
        extra = "".join([f", {_count(rejected, 'step')} rejected" if rejected else "",
                         f", {_count(rollbacks, 'blow-up')} rolled back" if rollbacks else ""])
        print(f"{len(result.history)} updates, {result.n_samplings} trajectories{extra}, {wall_time_text(result)}; "
              f"results in {result.run_dir} (exprefine report {result.run_dir})")
        return 0
    if args.command == "train":
        report = workflows.run_training(cfg, resume=args.resume, overwrite=args.overwrite, progress=bars)
        if report.result.valid_after is not None:
            print(report.result.valid_after.format_table("validation frames"))
        if report.test_errors is not None:
            print(report.test_errors.format_table("test frames"))
        print(f"{len(report.result.history)} epochs in {report.result.wall_time_s:.1f} s; "
              f"results in {report.run_dir}")
        return 0
    if args.command == "evaluate" and args.frames is not None and args.segment_ps is not None:
        raise ValueError("--segment-ps goes with sampling; --frames evaluates existing frames")
    if args.command == "evaluate" and args.frames is None and args.sampled_with is not None:
        raise ValueError("--sampled-with goes with --frames (frames sampled with other parameters)")
    if args.command == "evaluate" and args.frames is not None:
        frames = workflows.evaluate_frames(cfg, args.frames, type_map=args.type_map, checkpoint=args.checkpoint,
                                           every=args.every, state_point=args.state_point,
                                           sampled_with=args.sampled_with)
        print(f"{frames.n_frames} frames of {args.frames} -> {frames.out_dir}")
        if frames.ess_fraction is not None:
            threshold = RefinerSettings().ess_threshold
            print(f"reweighted from {args.sampled_with}: N_eff/N = {frames.ess_fraction:.3f}"
                  + (f" (below the refiner's default resampling threshold {threshold:g}: sample at these "
                     "parameters to be sure)" if frames.ess_fraction < threshold else ""))
        print(targets_table(frames.evaluation, None, before_label="model"))
        return 0
    if args.command == "evaluate" and args.state_point is not None:
        raise ValueError("--state-point goes with --frames; without it evaluate samples every state point")
    if args.command == "sample":
        reports = workflows.run_sampling(cfg, progress=bars, segment_ps=args.segment_ps)
    else:
        if args.checkpoint is None:
            raise ValueError("evaluate needs --checkpoint (sample with its parameters) or --frames (existing frames)")
        reports = workflows.run_evaluation(cfg, args.checkpoint, progress=bars, segment_ps=args.segment_ps)
    for sampled in reports:
        print_sampling(sampled, several=len(reports) > 1)
    return 0


def print_sampling(sampled: workflows.SamplingReport, several: bool) -> None:
    """One state point's frames, wall time, target table and where its files are."""
    head = f"state point {sampled.state_point}: " if several else ""
    print(f"{head}{sampled.trajectory.n_frames} frames in {sampled.wall_time_s:.1f} s "
          f"-> {sampled.out_dir / 'trajectory.pt'}")
    if sampled.evaluation is not None:
        print(targets_table(sampled.evaluation, None, before_label="model"))
        print(f"figures: {sampled.out_dir}/target_*.png (exprefine report {sampled.out_dir})")


def _stopped_by_launcher(signum: int, frame: object) -> None:
    """torchrun stops the other ranks with SIGTERM when one rank fails: say so instead of dying silently."""
    raise RankLost(f"rank {os.environ.get('RANK', '?')}: stopped by the launcher (another rank of the run failed); "
                   "the finished updates are in the run directory's checkpoints/latest.pt: continue with --resume")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


@contextmanager
def _plain_warnings() -> Iterator[None]:
    """Warnings as one line on stderr (``exprefine: warning: ...``), without source paths."""
    old = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"exprefine: {warning_line(message, category, filename)}", file=sys.stderr, flush=True)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = old


def main(argv: list[str] | None = None) -> None:
    """Console entry point: one-line errors for bad input, exit codes 2 (input) and 3 (simulation)."""
    silence_dependency_noise()
    try:
        with _plain_warnings():
            code = run(argv)
    except (ConfigError, ValueError, FileNotFoundError, RunDirectoryInUse) as exc:
        print(f"exprefine: error: {exc}", file=sys.stderr)
        code = 2
    except SimulationBlowUp as exc:
        print(f"exprefine: simulation failed: {exc}", file=sys.stderr)
        code = 3
    except RankLost as exc:
        print(f"exprefine: distributed run ended: {exc}", file=sys.stderr)
        code = 4
    except KeyboardInterrupt:
        print("exprefine: interrupted; finished updates are in the last checkpoint (use --resume)", file=sys.stderr)
        code = 130
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
