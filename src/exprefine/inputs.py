"""Check every file a config names before anything runs (``exprefine config validate``).

:func:`check_inputs` opens the structure and every data file, and checks columns, units, fit
ranges against the data and the observables' grids, the data files' stated composition and
density, and that every element the potential and the observables name is in the system and
vice versa. It builds nothing expensive (no model file is loaded, no MD is run): seconds.

A problem is a :class:`~exprefine.config.ConfigError` of one line naming the config file, the
key and its value: ``lj.yaml: targets.0.data.y_column = 'gr': data/g.csv: y column 'gr' missing; ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .builders import build_observable, build_system_state, data_metadata_problem, load_target_data, system_composition
from .config import Config, ConfigError, DeepmdConfig, MaceConfig, SamplingConfig, SystemConfig, TargetConfig
from .data import expand_paths
from .experiment import DataFileError
from .fit_window import fit_window
from .state import State


@dataclass
class InputCheck:
    """What :func:`check_inputs` found.

    Attributes:
        elements: the elements of the system, with their number of atoms (first replica).
        data_files: every data file opened, with its number of points.
        notes: one-line remarks that do not stop a run (a clipped fit range, a tidied file).
    """

    elements: dict[str, int] = field(default_factory=dict)
    data_files: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _fail(source: str, key: str, value: Any, message: str) -> ConfigError:
    return ConfigError(f"{source}: {key} = {value!r}: {message}")


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def check_inputs(cfg: Config, source: str = "config") -> InputCheck:
    """Open every file ``cfg`` names and check it against the config; see the module documentation.

    Args:
        cfg: a validated config (paths absolute).
        source: the config file's name, the first word of every message.

    Raises:
        ConfigError: the first problem found, in one line (file: key = value: what is wrong).
    """
    check = InputCheck()
    _check_model_files(cfg, source)
    for i, spec in enumerate(cfg.state_points()):
        where = "" if cfg.systems is None else f"systems.{i}."
        state = _check_system(spec.system, source, "system." if cfg.systems is None else where)
        check.elements.update(dict(system_composition(state)))
        _check_species(cfg, spec.targets, source, set(system_composition(state)), where)
        _check_targets(spec.targets, spec.sampling, state, source, where, check)
    if cfg.dft is not None:
        try:
            expand_paths(cfg.dft.file)
        except FileNotFoundError as exc:
            raise _fail(source, "dft.file", str(cfg.dft.file), str(exc)) from None
    return check



def _check_targets(targets: list[TargetConfig], sampling: SamplingConfig, state: State, source: str, where: str,
                   check: InputCheck) -> None:
    """Every data file of ``targets`` against its observable's grid and the system (``where``: key prefix)."""
    for k, t in enumerate(targets):
        prefix = f"{where}targets.{k}"
        if t.data is None:
            continue
        try:
            data = load_target_data(t)
        except FileNotFoundError:
            raise _fail(source, f"{prefix}.data.file", _display(t.data.file), "file not found") from None
        except DataFileError as exc:
            raise _fail(source, f"{prefix}.data.{exc.argument}", exc.value if exc.argument != "file"
                        else _display(t.data.file), str(exc)) from None
        check.data_files[_display(t.data.file)] = len(data)
        if data.tidy_note is not None:
            check.notes.append(f"{prefix}.data.tidy: {_display(t.data.file)}: {data.tidy_note}")
        grid = build_observable(t.observable, sampling.temperature_K).grid()
        assert grid is not None
        key = t.given_as.get("fit_range", "fit_range")
        window = fit_window(t.fit_range, data.x, grid.detach().cpu().double().numpy())
        problem = window.error(key)
        if problem is not None:
            value = list(t.fit_range) if t.fit_range is not None else None
            raise _fail(source, f"{prefix}.{key}", value, f"{problem} ({_display(t.data.file)})")
        check.notes += [f"{prefix}.{note}" for note in window.notes(key)]
        metadata = data_metadata_problem(t, state, sampling.pressure_bar)
        if metadata is not None:
            raise _fail(source, f"{prefix}.data.{metadata.key}", getattr(t.data, metadata.key), metadata.message)

def _check_system(system: SystemConfig, source: str, where: str) -> State:
    """The starting structure (read or built): the first system's atoms."""
    if system.structure_file is not None and not system.structure_file.exists():
        raise _fail(source, f"{where}structure_file", _display(system.structure_file), "file not found")
    try:
        return build_system_state(system)
    except Exception as exc:  # ASE readers raise many kinds of errors; any of them means a bad file
        key = f"{where}structure_file" if system.structure_file is not None else f"{where}lattice"
        value = _display(system.structure_file) if system.structure_file is not None else None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(source, key, value, f"cannot be read: {first}") from None


def _check_species(cfg: Config, targets: list[TargetConfig], source: str, system: set[str], where: str) -> None:
    """Every species list covers the system's elements; every observable names elements the system has."""
    for k, term in enumerate(cfg.potential.terms):
        species = getattr(term, "species", None)
        if species is None:
            continue
        missing = sorted(system - set(species))
        if missing:
            raise _fail(source, f"potential.terms.{k}.species", list(species),
                        f"the system also holds {', '.join(missing)} (a {term.kind} term needs every element)")
    for k, t in enumerate(targets):
        obs = t.observable
        named = getattr(obs, "species", None) or getattr(getattr(obs, "of", None), "species", None)
        if named is None:
            continue
        absent = sorted(set(named) - system)
        if absent:
            raise _fail(source, f"{where}targets.{k}.observable.species", list(named),
                        f"{', '.join(absent)} not in the system ({', '.join(sorted(system))})")


def _check_model_files(cfg: Config, source: str) -> None:
    """Model and checkpoint files exist (they are not loaded: that may take minutes)."""
    for k, term in enumerate(cfg.potential.terms):
        if isinstance(term, MaceConfig):
            key, path = "model_file", term.model_file
        elif isinstance(term, DeepmdConfig):
            key, path = "checkpoint_file", term.checkpoint_file
        else:
            continue
        if not path.exists():
            raise _fail(source, f"potential.terms.{k}.{key}", _display(path), "file not found")
    initial = cfg.potential.initial_checkpoint
    if initial is not None and not initial.exists():
        raise _fail(source, "potential.initial_checkpoint", _display(initial), "file not found")
