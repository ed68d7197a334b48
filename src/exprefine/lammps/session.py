"""Run LAMMPS commands with forces, energy and virial from an exprefine Potential.

The input names where the forces go with ``fix ID all external pf/callback 1 1`` (in place
of ``pair_style``/``pair_coeff``; other pair styles may be overlaid, e.g. a ``pair_style table``
correction). :class:`LammpsSession` hands LAMMPS one command at a time; right after such a fix
is defined it attaches the potential (:class:`~exprefine.lammps.bridge.ExternalForces`) and
issues ``fix_modify ID energy yes virial yes``, so that ``pe``, ``etotal`` and the pressure
include the potential. Before each ``run``/``minimize``/``rerun`` it maps the atom types to
elements and evaluates the potential once, so an element the model does not know stops the
input with one line. One MPI rank (the potential evaluates every atom).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..potentials.base import Potential
from .bridge import ExternalForces, energy_per_eV, numbers_of_types
from .library import open_lammps
from .script import InputCommand, LammpsInputError, external_fix_id, read_input_commands


class LammpsError(ValueError):
    """LAMMPS stopped on a command, or the potential failed inside a callback (one line)."""


def lammps_args(log_file: str | Path | None = None, screen: bool = False,
                variables: Mapping[str, str] | None = None) -> list[str]:
    """LAMMPS command-line arguments: log file (None: no log), screen output, ``-var NAME VALUE``."""
    args = ["-log", str(log_file) if log_file is not None else "none"]
    if not screen:
        args += ["-screen", "none"]
    for name, value in (variables or {}).items():
        args += ["-var", str(name), str(value)]
    return args


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


class LammpsSession:
    """One LAMMPS instance whose ``fix external pf/callback`` forces come from ``potential``.

    Args:
        potential: any exprefine Potential (a MACE or DeePMD adapter, a SumPotential, LJ, ...).
        type_map: element of LAMMPS atom types 1, 2, ...; None maps each type by its mass.
        cmdargs: LAMMPS command-line arguments (:func:`lammps_args`).
        dtype, device: of the states handed to the potential (float64 on the CPU by default).

    Use as a context manager (``with LammpsSession(...) as s: s.file("in.lammps")``), or call
    :meth:`close`. ``lmp`` is the ``lammps.lammps`` instance for anything else (extract_*, get_thermo).
    """

    def __init__(
        self,
        potential: Potential,
        *,
        type_map: Sequence[str] | None = None,
        cmdargs: Sequence[str] = ("-log", "none", "-screen", "none"),
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> None:
        self.potential = potential
        self.type_map = list(type_map) if type_map is not None else None
        self.dtype = dtype
        self.device = device
        self.callbacks: dict[str, ExternalForces] = {}
        self._retired: list[ExternalForces] = []
        self.lmp: Any = open_lammps(cmdargs)
        self._checked: tuple | None = None

    # ------------------------------------------------------------------ commands
    def command(self, text: str) -> None:
        """Run one LAMMPS command.

        Raises:
            LammpsInputError: the input cannot be run this way (fix external mode, type map, elements).
            LammpsError: LAMMPS stopped on the command, or the potential failed during it.
        """
        self.run_command(InputCommand(text, "command", 0))

    def run_command(self, command: InputCommand) -> None:
        """Run one :class:`~exprefine.lammps.script.InputCommand` (see :meth:`command`)."""
        fix_id = external_fix_id(command)
        words = command.words
        if command.name == "unfix" and len(words) > 1:
            if words[1] in self.callbacks:
                self._retired.append(self.callbacks.pop(words[1]))
        if command.computes_forces and self.callbacks:
            self._prepare(command)
        self._lammps(command.text, command)
        if fix_id is not None:
            self._attach(fix_id, command)
        for callback in self.callbacks.values():
            if callback.stats.error is not None:
                raise LammpsError(f"{_where(command)}{command.text!r}: the exprefine potential failed at step "
                                  f"{callback.stats.error_step}: {_first_line(callback.stats.error)}")

    def commands(self, lines: Sequence[str]) -> None:
        """Run several commands, one per entry."""
        for line in lines:
            self.command(line)

    def file(self, path: str | Path) -> None:
        """Run every command of the LAMMPS input ``path`` (see :func:`~exprefine.lammps.script.read_input_commands`)."""
        for command in read_input_commands(path):
            self.run_command(command)

    def close(self) -> None:
        """Close the LAMMPS instance (MPI stays initialised for the next one)."""
        if self.lmp is not None:
            self.lmp.close()
            self.lmp = None

    def __enter__(self) -> "LammpsSession":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ figures
    @property
    def force_calls(self) -> int:
        """Callbacks answered so far, over all fix external instances."""
        return sum(c.stats.n_calls for c in [*self.callbacks.values(), *self._retired])

    @property
    def force_time_s(self) -> float:
        """Wall time spent in the potential so far, s."""
        return sum(c.stats.time_s for c in [*self.callbacks.values(), *self._retired])

    # ------------------------------------------------------------------ internals
    def _lammps(self, text: str, command: InputCommand) -> None:
        try:
            self.lmp.command(text)
        except Exception as exc:  # the lammps module raises plain Exception with LAMMPS's message
            raise LammpsError(f"{_where(command)}{text!r}: {_first_line(exc)}") from None

    def _attach(self, fix_id: str, command: InputCommand) -> None:
        units = str(self.lmp.extract_global("units"))
        try:
            factor = energy_per_eV(units)
        except LammpsInputError as exc:
            raise LammpsInputError(f"{_where(command)}{exc}") from None
        callback = ExternalForces(self.lmp, fix_id, self.potential, np.zeros(1, dtype=np.int64), factor,
                                  self.dtype, self.device)
        self._lammps(f"fix_modify {fix_id} energy yes virial yes", command)
        self.lmp.set_fix_external_callback(fix_id, callback)
        self.callbacks[fix_id] = callback
        self._checked = None

    def _prepare(self, command: InputCommand) -> None:
        """Map atom types to elements and evaluate the potential once on the current atoms."""
        n_types = int(self.lmp.extract_global("ntypes"))
        masses = self._masses(n_types)
        try:
            numbers = numbers_of_types(n_types, self.type_map, masses)
        except LammpsInputError as exc:
            raise LammpsInputError(f"{_where(command)}{exc}") from None
        for callback in self.callbacks.values():
            callback.numbers = numbers
        key = (tuple(numbers), int(self.lmp.get_natoms()))
        if key == self._checked:
            return
        callback = next(iter(self.callbacks.values()))
        nlocal = int(self.lmp.extract_global("nlocal"))
        positions = np.array(self.lmp.numpy.extract_atom("x")[:nlocal], dtype=np.float64)
        try:
            with torch.no_grad():
                self.potential.compute(callback.state(positions), forces=False)
        except (ValueError, KeyError) as exc:
            raise LammpsInputError(f"{_where(command)}{_first_line(exc)}") from None
        self._checked = key

    def _masses(self, n_types: int) -> np.ndarray | None:
        masses = self.lmp.numpy.extract_atom("mass")
        if masses is None:
            return None
        masses = np.asarray(masses, dtype=np.float64)[: n_types + 1]
        return masses if len(masses) == n_types + 1 and (masses[1:] > 0).all() else None


def _where(command: InputCommand) -> str:
    return f"{command.where}: " if command.line else ""


@dataclass
class LammpsRunResult:
    """What :func:`run_lammps` did.

    Attributes:
        input_file: the LAMMPS input.
        n_commands: commands run.
        n_force_calls: times the potential was evaluated (one per MD step, plus setups).
        force_time_s: wall time inside the potential, s.
        wall_time_s: wall time of the whole input, s.
        final_step: LAMMPS's timestep at the end.
    """

    input_file: Path
    n_commands: int
    n_force_calls: int
    force_time_s: float
    wall_time_s: float
    final_step: int


def run_lammps(
    potential: Potential,
    input_file: str | Path,
    *,
    type_map: Sequence[str] | None = None,
    variables: Mapping[str, str] | None = None,
    log_file: str | Path | None = "log.lammps",
    screen: bool = True,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> LammpsRunResult:
    """Run the LAMMPS input ``input_file`` with forces from ``potential`` through ``fix external``.

    Paths inside the input are relative to the working directory, as for ``lmp -in``.

    Args:
        potential: the exprefine potential.
        input_file: a LAMMPS input with ``units metal`` (or ``real``) and a
            ``fix ID all external pf/callback 1 1`` line.
        type_map: element of atom types 1, 2, ... (None: by their masses).
        variables: LAMMPS index variables, as ``lmp -var NAME VALUE``.
        log_file: LAMMPS's log file (None: none).
        screen: LAMMPS's screen output on stdout.
        dtype, device: of the states handed to the potential.

    Raises:
        FileNotFoundError: no such input (or included file).
        LammpsInputError: an input exprefine cannot run (no fix external, types without elements,
            elements the potential does not know), one line naming the file and line.
        LammpsError: LAMMPS stopped, or the potential failed, one line naming the file and line.
        LammpsUnavailable: the LAMMPS Python module is not installed.
    """
    commands = read_input_commands(input_file)
    if not any(external_fix_id(c) for c in commands):
        raise LammpsInputError(f"{input_file}: no 'fix ID all external pf/callback 1 1' line, so the exprefine "
                               "potential would not act: add one in place of pair_style/pair_coeff")
    start = time.perf_counter()
    with LammpsSession(potential, type_map=type_map, cmdargs=lammps_args(log_file, screen, variables),
                       dtype=dtype, device=device) as session:
        for command in commands:
            session.run_command(command)
        step = int(session.lmp.extract_global("ntimestep"))
        return LammpsRunResult(Path(input_file), len(commands), session.force_calls, session.force_time_s,
                               time.perf_counter() - start, step)
