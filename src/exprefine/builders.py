"""Turn a validated :class:`~exprefine.config.Config` into the objects of the Python API.

The CLI is a thin layer over these functions; a script can call them as well.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from ase.data import chemical_symbols

from .config import (
    SINGLE_STATE_POINT,
    Config,
    ConfigError,
    D3Config,
    DeepmdConfig,
    LatticeConfig,
    MaceConfig,
    ObservableConfig,
    PairDispersionConfig,
    PairSplineConfig,
    SamplingConfig,
    StatePointSpec,
    SystemConfig,
    TargetConfig,
    config_relative_to,
)
from .d3_table import D3PairApproximation, d3_pair_approximation, write_d3_pair_table
from .data import concatenate_datasets, expand_paths, load_split, read_deepmd, read_extxyz_files, split, split_by_key
from .experiment import ExperimentalData, interpolate, load_table
from .fit_window import fit_window
from .io.checkpoint import full_state, load_checkpoint
from .io.lammps_table import PairTable, lammps_overlay_lines, lammps_table_lines, tabulate_pairs, write_pair_table
from .observables import (
    Observable,
)
from .potentials import PairPotential, Potential, SumPotential
from .potentials.dftd3 import D3Dispersion
from .refine import FusedDFT, GaussNewtonSettings, ParameterPrior, Refiner, RefinerSettings, StatePoint, Target
from .refine.collective import Collective
from .sampling import BarostatSettings, SamplerSettings
from .state import State, from_atoms, read_state, replicate
from .training import TrainSettings
from .trajectory import Trajectory
from .units import PS_IN_FS

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# number of atoms in the conventional cubic cell
_ATOMS_PER_CUBIC_CELL = {"fcc": 4, "bcc": 2, "sc": 1, "diamond": 8}


def lattice_atoms(cfg: LatticeConfig):
    """ASE Atoms of a cubic lattice whose constant gives the requested number density."""
    from ase.build import bulk

    a = (_ATOMS_PER_CUBIC_CELL[cfg.kind] / cfg.number_density_per_A3) ** (1.0 / 3.0)
    try:
        atoms = bulk(cfg.element, cfg.kind, a=a, cubic=True)
    except Exception as exc:
        raise ValueError(f"cannot build a {cfg.kind} lattice of {cfg.element!r}: {exc}") from None
    return atoms.repeat(cfg.repeat)


def resolve_device(name: str) -> torch.device:
    """The device of ``device: auto | cpu | cuda`` (auto: CUDA when one is visible; cuda without one: an error)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda, but torch sees no CUDA device (torch.cuda.is_available() is False)")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def config_device(cfg: Config) -> torch.device:
    """The device of ``cfg`` (``device`` key)."""
    return resolve_device(cfg.device)


def build_system_state(system: SystemConfig, device: torch.device | str = "cpu") -> State:
    """A state point's starting configuration, replicated ``n_replicas`` times, on ``device``."""
    dtype = _DTYPES[system.dtype]
    if system.lattice is not None:
        state = from_atoms(lattice_atoms(system.lattice), dtype=dtype)
    else:
        assert system.structure_file is not None
        state = read_state(system.structure_file, dtype=dtype)
        if state.n_systems != 1:
            raise ValueError(f"{system.structure_file}: expected one structure, found {state.n_systems}")
    state.velocities = None
    state = replicate(state, system.n_replicas) if system.n_replicas > 1 else state
    return state.to(device=device)


def build_state(cfg: Config) -> State:
    """The starting configuration (of the first state point), replicated ``n_replicas`` times."""
    return build_system_state(cfg.state_points()[0].system)


def build_potential(cfg: Config, device: torch.device | str = "cpu") -> Potential:
    """The potential of ``cfg.potential`` (parameters from ``initial_checkpoint`` if given) on ``device``."""
    dtype = _DTYPES[cfg.dtype]
    potential = SumPotential([term.build(dtype) for term in cfg.potential.terms],
                             concurrent=cfg.potential.concurrent_terms).to(dtype)
    if cfg.potential.initial_checkpoint is not None:
        load_potential_state(potential, cfg.potential.initial_checkpoint)
    return potential.to(device)


def _terms(potential: Potential) -> list[Potential]:
    return potential.term_list() if isinstance(potential, SumPotential) else [potential]


def save_native_models(cfg: Config, potential: Potential) -> list[Path]:
    """Write every term that has a native file format next to the run; the paths written.

    MACE terms: a ``.model`` file. DeePMD terms: a ``dp --pt train``-style checkpoint (``.pt``)
    and the frozen model made from it (``.pth``, for LAMMPS ``pair_style deepmd``), in that order.
    Learnable pair terms: one LAMMPS table file and the lines that add it (:func:`save_pair_correction`);
    D3 terms: their parameters (JSON) and a pair table that stands in for them in LAMMPS (:func:`save_d3_pair_tables`).
    """
    written: list[Path] = []
    pairs = list(zip(cfg.potential.terms, _terms(potential)))
    for kind in dict.fromkeys(c.kind for c in cfg.potential.terms):
        same = [(c, t) for c, t in pairs if c.kind == kind]
        for index, (term_cfg, term) in enumerate(same):
            written += term_cfg.save_native(term, Path(cfg.run_dir), index, len(same))
    written += save_pair_correction(cfg, potential)
    written += save_d3_pair_tables(cfg, potential)
    return written


#: the learnable pair terms a refinement adds to a model, written as LAMMPS pair tables
_PAIR_CORRECTIONS = (PairSplineConfig, PairDispersionConfig)


def save_pair_correction(cfg: Config, potential: Potential) -> list[Path]:
    """The learnable pair terms (splines, dispersion) of the potential as one LAMMPS table file.

    Writes ``run_dir/refined_pairs.table`` (their sum per species pair, from 0.5 Å to the longest
    cutoff) and ``run_dir/refined_pairs.lammps``: the ``pair_style hybrid/overlay`` lines that add
    the table to the model's own pair style (DeePMD or MACE), or the table alone. Nothing without
    such terms.
    """
    pairs = [t for c, t in zip(cfg.potential.terms, _terms(potential))
             if isinstance(c, _PAIR_CORRECTIONS) and isinstance(t, PairPotential)]
    if not pairs:
        return []
    species = list(dict.fromkeys(s for c in cfg.potential.terms if isinstance(c, _PAIR_CORRECTIONS) for s in c.species))
    run_dir = Path(cfg.run_dir)
    tables = tabulate_pairs(pairs, species)
    table_file = write_pair_table(run_dir / "refined_pairs.table", tables,
                                  comment=f"learned pair correction of {run_dir.name} (exprefine)")
    lines_file = run_dir / "refined_pairs.lammps"
    lines_file.write_text(_overlay_note(species) + _overlay_lines(cfg, species, table_file.name, tables))
    return [table_file, lines_file]


def _overlay_lines(cfg: Config, species: list[str], table_name: str, tables: list[PairTable]) -> str:
    """The LAMMPS lines that add a table to the run's one DeePMD or MACE model, or the table alone."""
    models = [c for c in cfg.potential.terms if isinstance(c, (DeepmdConfig, MaceConfig))]
    if len(models) == 1 and isinstance(models[0], DeepmdConfig):
        return lammps_overlay_lines("deepmd", "refined_deepmd.pth", species, table_name, tables)
    if len(models) == 1:
        return lammps_overlay_lines("mace", "refined.model-lammps.pt", species, table_name, tables)
    return lammps_table_lines(species, table_name, tables)


def _overlay_note(species: list[str]) -> str:
    return (f"# LAMMPS atom types: {' '.join(f'{k + 1}={s}' for k, s in enumerate(species))}; "
            "the table must be read in metal units\n")


#: structures larger than this get no D3 pair table from :func:`save_d3_pair_tables`
D3_TABLE_MAX_ATOMS = 2000
#: MD frames :func:`save_d3_pair_tables` fits and checks its short-range spline on (half each)
D3_TABLE_FRAMES = 20


def save_d3_pair_tables(cfg: Config, potential: Potential, frames: Sequence[State] | None = None) -> list[Path]:
    """The D3(BJ) terms of the potential as a LAMMPS pair table, for a LAMMPS without custom D3 parameters.

    LAMMPS's ``pair_style dispersion/d3`` takes only published functionals' parameters, not refined
    ones, so the refined D3 is written in the form any LAMMPS runs (:mod:`exprefine.d3_table`): D3
    with the coordination numbers of the run's (first state point's) structure frozen, plus a
    short-range pair spline fitted to the forces that misses on up to :data:`D3_TABLE_FRAMES`
    frames of the run's last trajectory, or on ``frames`` (without any: the frozen term alone). Writes
    ``run_dir/refined_d3bj_pairs.table`` and ``run_dir/refined_d3bj_pairs.lammps``, whose headers
    give the table's RMS force difference from the full D3 on frames it was not fitted to. The full
    term stays in ``refined_d3bj.json`` (ASE: :func:`~exprefine.potentials.dftd3.d3_ase_calculator`;
    LAMMPS: ``exprefine lammps``). Nothing without D3 terms, or with several.
    """
    terms = [t for c, t in zip(cfg.potential.terms, _terms(potential))
             if isinstance(c, D3Config) and isinstance(t, D3Dispersion)]
    if len(terms) != 1:
        return []
    point = cfg.state_points()[0]
    state = build_system_state(point.system).to(dtype=torch.float64)
    structure = state.split()[0]
    if structure.n_atoms > D3_TABLE_MAX_ATOMS:  # D3's pair energies of the structure and its images are a dense matrix
        warnings.warn(f"no D3 pair table written: the run's structure has {structure.n_atoms} atoms (more than "
                      f"{D3_TABLE_MAX_ATOMS}); use exprefine.d3_table.d3_pair_approximation on a smaller cell",
                      stacklevel=2)
        return []
    species = [chemical_symbols[int(z)] for z in sorted(set(structure.atomic_numbers.tolist()))]
    run_dir = Path(cfg.run_dir)
    if frames is None:
        frames_dir = run_dir if cfg.systems is None else run_dir / point.name  # several state points: the first's
        frames = last_trajectory_frames(frames_dir, D3_TABLE_FRAMES)
    approximation = d3_pair_approximation(terms[0].current_parameters(), structure, species, frames)
    return write_d3_pair_files(cfg, approximation, species)


def write_d3_pair_files(cfg: Config, approximation: D3PairApproximation, species: list[str]) -> list[Path]:
    """``run_dir/refined_d3bj_pairs.table`` and ``.lammps`` (the lines that add it to the run's model) of a
    D3 pair approximation, both headed by its measured force error; the paths written."""
    run_dir = Path(cfg.run_dir)
    title = f"refined D3(BJ) of {run_dir.name} as pair terms (exprefine)"
    table_file, tables = write_d3_pair_table(approximation, run_dir / "refined_d3bj_pairs.table", species, title)
    lines_file = run_dir / "refined_d3bj_pairs.lammps"
    lines_file.write_text(f"# {title}: {approximation.describe()}\n" + _overlay_note(species)
                          + _overlay_lines(cfg, species, table_file.name, tables))
    return [table_file, lines_file]


def last_trajectory_frames(run_dir: Path, n_frames: int) -> list[State]:
    """:func:`spaced_frames` of the last trajectory in ``run_dir/trajectories`` (none if there is none)."""
    files = sorted((run_dir / "trajectories").glob("trajectory_*.pt"))
    return spaced_frames(Trajectory.load(files[-1]), n_frames) if files else []


def spaced_frames(trajectory: Trajectory, n_frames: int) -> list[State]:
    """Up to ``n_frames`` evenly spaced frames of a trajectory (the first system of each), float64."""
    picks = sorted(set(np.linspace(0, trajectory.n_frames - 1, min(n_frames, trajectory.n_frames)).round().astype(int)))
    return [trajectory.as_state([int(k)]).to(dtype=torch.float64).split()[0] for k in picks]


def term_priors(cfg: Config, potential: Potential) -> list[ParameterPrior]:
    """The Gaussian priors of every term's ``prior`` section, on its parameters (named ``terms.I.NAME``)."""
    priors = []
    for index, (term_cfg, term) in enumerate(zip(cfg.potential.terms, _terms(potential))):
        named = dict(term.named_parameters())
        for name, spec in term_cfg.prior.items():
            where = f"potential.terms[{index}].prior.{name}"
            if name not in named and name in term_cfg.trainable_choices():
                raise ConfigError(f"{where}: {name!r} does not train in this {term_cfg.kind} term "
                                  f"(add it to the term's trainable)")
            if name not in named:
                raise ConfigError(f"{where}: the {term_cfg.kind} term has no parameter {name!r}; "
                                  f"its parameters: {', '.join(sorted(named)) or 'none'}")
            if not named[name].requires_grad:
                raise ConfigError(f"{where}: the parameter is not trainable (add it to the term's trainable)")
            try:
                priors.append(ParameterPrior(f"terms.{index}.{name}", named[name],
                                             torch.tensor(spec.mean, dtype=torch.float64),
                                             torch.tensor(spec.sigma, dtype=torch.float64)))
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from None
    return priors


def term_learning_rates(cfg: Config, potential: Potential) -> dict[int, float]:
    """Step sizes of the terms that set their own (by parameter identity), for the Refiner."""
    rates: dict[int, float] = {}
    for term_cfg, term in zip(cfg.potential.terms, _terms(potential)):
        rates.update(term_cfg.learning_rates(term))
    return rates


def load_potential_state(potential: Potential, checkpoint_path) -> None:
    """Load the parameters stored in a checkpoint or final model file into ``potential`` (a refinement
    checkpoint holds the trainable tensors only: the frozen rest must be the one it was written with)."""
    data = load_checkpoint(checkpoint_path)
    try:
        potential.load_state_dict(full_state(potential, data["potential_state"], checkpoint_path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise ValueError(f"{checkpoint_path}: parameters do not fit this potential ({first})") from None


def sampler_settings(s: SamplingConfig) -> SamplerSettings:
    """SamplerSettings in steps from the config's times in ps/fs."""
    dt = s.timestep_fs
    stride = max(1, int(round(s.frame_interval_fs / dt)))
    n_prod = int(math.ceil(s.production_ps * PS_IN_FS / dt / stride)) * stride
    return SamplerSettings(
        integrator=s.integrator,
        temperature_K=s.temperature_K,
        timestep_fs=dt,
        friction_per_ps=s.friction_per_ps,
        thermostat_time_fs=s.thermostat_time_fs,
        n_equilibration_steps=int(round(s.equilibration_ps * PS_IN_FS / dt)),
        n_production_steps=n_prod,
        stride_steps=stride,
        seed=s.seed,
        max_temperature_factor=s.max_temperature_factor,
        barostat=None if s.pressure_bar is None else BarostatSettings(
            pressure_bar=s.pressure_bar, compressibility_per_bar=s.compressibility_per_bar,
            time_fs=s.barostat_time_fs, interval_steps=s.barostat_interval_steps, coupling=s.barostat_coupling),
    )


def build_observable(obs_cfg: ObservableConfig, temperature_K: float) -> Observable:
    """The Observable of a target's ``observable`` section."""
    return obs_cfg.build(temperature_K)


def build_target(t: TargetConfig, temperature_K: float) -> Target:
    """A Target: the observable plus the measured data interpolated onto its grid."""
    observable = build_observable(t.observable, temperature_K)
    scalar = t.scalar_value
    if scalar is not None:
        value, sigma = scalar
        return Target(name=t.name, observable=observable, reference=torch.tensor(value, dtype=torch.float64),
                      sigma=None if sigma is None else torch.tensor(sigma, dtype=torch.float64), weight=t.weight)
    assert t.data is not None
    data = load_target_data(t)
    grid = observable.grid()
    assert grid is not None
    grid_np = grid.detach().cpu().numpy()
    window = fit_window(t.fit_range, data.x, grid_np)
    key = t.given_as.get("fit_range", "fit_range")
    problem = window.error(key)
    if problem is not None:
        raise ValueError(f"target {t.name}: {problem} ({t.data.file.name})")
    for note in window.notes(key):
        warnings.warn(f"target {t.name}: {note}", UserWarning, stacklevel=2)
    covered = (grid_np >= data.x[0]) & (grid_np <= data.x[-1])
    # the measurement on the grid where the data reach (NaN elsewhere); only the mask enters the loss
    y = torch.full((len(grid_np),), float("nan"), dtype=torch.float64)
    sig = None
    y_in, s_in = interpolate(data, grid_np[covered])
    y[torch.from_numpy(covered)] = torch.as_tensor(y_in, dtype=torch.float64)
    if s_in is not None:
        sig = torch.ones(len(grid_np), dtype=torch.float64)
        sig[torch.from_numpy(covered)] = torch.as_tensor(s_in, dtype=torch.float64)
    return Target(name=t.name, observable=observable, reference=y, sigma=sig,
                  mask=torch.from_numpy(window.mask), weight=t.weight, measured=data)


def load_target_data(t: TargetConfig) -> ExperimentalData:
    """The data file of a curve target, read with the target's columns, unit and ``tidy``."""
    assert t.data is not None
    d = t.data
    return load_table(d.file, x_column=d.x_column, y_column=d.y_column, sigma_column=d.sigma_column,
                      x_unit=d.x_unit, tidy=d.tidy)


def _format_fractions(fractions: dict[str, float]) -> str:
    return ", ".join(f"{el} {x:.3f}" for el, x in sorted(fractions.items()))


def system_composition(state: State) -> Counter[str]:
    """Atoms of each element in the first system of ``state``."""
    first = state.system_idx == 0
    return Counter(chemical_symbols[int(z)] for z in state.atomic_numbers[first].tolist())


@dataclass
class MetadataProblem:
    """A data file's stated metadata that contradicts the simulated system: the data key at fault and why."""

    key: str
    message: str


def data_metadata_problem(t: TargetConfig, state: State, pressure_bar: float | None) -> MetadataProblem | None:
    """Whether target ``t``'s data file states a composition or density that the system contradicts."""
    d = t.data
    if d is None:
        return None
    counts = system_composition(state)
    n_atoms = sum(counts.values())
    if d.composition is not None:
        total = sum(d.composition.values())
        stated = {el: v / total for el, v in d.composition.items() if v > 0}
        system = {el: n / n_atoms for el, n in counts.items()}
        if set(stated) != set(system) or any(abs(stated[el] - system[el]) > 1e-3 for el in stated):
            return MetadataProblem("composition", f"target {t.name}: {d.file.name} states the composition "
                                                  f"{_format_fractions(stated)} but the system has {_format_fractions(system)}")
    if d.number_density_per_A3 is not None and pressure_bar is None:
        rho = n_atoms / float(state.volume_A3()[0])
        if abs(rho / d.number_density_per_A3 - 1) > 0.02:
            return MetadataProblem("number_density_per_A3",
                                   f"target {t.name}: {d.file.name} was measured at {d.number_density_per_A3:g} Å⁻³ "
                                   f"but the system's cell holds {rho:.5g} Å⁻³ (NVT)")
    return None


def check_data_metadata(cfg: Config, state: State) -> None:
    """One-line errors when a data file's stated composition or density contradicts the simulated system
    (of the first state point; :func:`build_state_points` checks every one)."""
    spec = cfg.state_points()[0]
    check_point_metadata(spec, state)


def check_point_metadata(spec: StatePointSpec, state: State) -> None:
    """One-line errors when a data file of state point ``spec`` contradicts its system (composition, density)."""
    for t in spec.targets:
        problem = data_metadata_problem(t, state, spec.sampling.pressure_bar)
        if problem is not None:
            raise ValueError(problem.message if spec.name == SINGLE_STATE_POINT
                             else f"state point {spec.name}: {problem.message}")


def build_targets(cfg: Config) -> list[Target]:
    """The targets of the first (or only) state point."""
    spec = cfg.state_points()[0]
    return [build_target(t, spec.sampling.temperature_K) for t in spec.targets]


def _resample_steps(s: SamplingConfig) -> int:
    return int(round(s.resample_equilibration_ps * PS_IN_FS / s.timestep_fs))


def build_state_points(cfg: Config, device: torch.device | str = "cpu") -> list[StatePoint]:
    """Every state point of ``cfg``: structure (on ``device``), targets (weights times the state point's
    ``weight``), MD settings; each data file is checked against its system."""
    points = []
    for spec in cfg.state_points():
        state = build_system_state(spec.system, device)
        check_point_metadata(spec, state)
        targets = [build_target(t, spec.sampling.temperature_K) for t in spec.targets]
        if spec.weight != 1.0:
            targets = [replace(t, weight=t.weight * spec.weight) for t in targets]
        given = spec.system.start_trajectory_file
        points.append(StatePoint(spec.name, targets, sampler_settings(spec.sampling), state,
                                 resample_equilibration_steps=_resample_steps(spec.sampling),
                                 replica_groups=spec.system.replica_groups,
                                 start_trajectory=None if given is None else Trajectory.load(given, state.device)))
    return points


def refiner_settings(cfg: Config, progress: bool = True, progress_lines: bool = False) -> RefinerSettings:
    r = cfg.refine
    return RefinerSettings(
        n_updates=r.n_updates,
        learning_rate=r.learning_rate,
        learning_rate_decay=r.learning_rate_decay,
        ess_threshold=r.ess_threshold,
        chunk_size=r.chunk_size,
        resample_equilibration_steps=_resample_steps(cfg.state_points()[0].sampling),
        max_rollbacks=r.max_rollbacks,
        final_check=r.final_check,
        progress=progress,
        progress_lines=progress_lines,
        optimizer=r.optimizer,
        adam_betas=r.adam_betas,
        gauss_newton=GaussNewtonSettings(initial_damping=r.initial_damping, max_step_kT=r.max_step_kT),
        segment_ps=r.segment_ps,
    )


def build_refiner(cfg: Config, progress: bool = True, progress_lines: bool = False,
                  collective: Collective | None = None) -> Refiner:
    """Everything a refinement needs, from one config (``progress``: bars; ``progress_lines``: a plain
    line per update instead; ``collective``: the ranks of a distributed run)."""
    if not any(spec.targets for spec in cfg.state_points()):
        raise ValueError("the config has no targets to refine against")
    device = getattr(collective, "device", None) or config_device(cfg)
    potential = build_potential(cfg, device)
    return Refiner(
        potential=potential,
        targets=[],
        sampler_settings=None,
        start=None,
        state_points=build_state_points(cfg, device),
        settings=refiner_settings(cfg, progress, progress_lines),
        run_dir=cfg.run_dir,
        config=config_relative_to(cfg, cfg.run_dir),  # as recorded in checkpoints
        learning_rates=term_learning_rates(cfg, potential),
        priors=term_priors(cfg, potential),
        dft=fused_dft(cfg, build_dft_split(cfg)) if cfg.dft is not None else None,
        collective=collective,
    )


def build_dft_split(cfg: Config):
    """Read ``cfg.dft.file`` and split it; the split is saved in ``run_dir/dft_split.json``.

    A random split is reused from that file (one-line error if the data changed); a key-hash split
    (``split_key``) is recomputed from the frame names, so frames added to the data set later fall
    into their own subsets and the old frames keep theirs.
    """
    d = cfg.dft
    if d is None:
        raise ValueError("the config has no dft section")
    fmt = d.format
    paths = expand_paths(d.file)
    if fmt == "auto":
        fmt = "deepmd" if all(p.is_dir() for p in paths) else "extxyz"
    keys = None
    if fmt == "deepmd":
        if d.split_key is not None:
            raise ValueError("dft.split_key needs extxyz frames (DeePMD systems carry no frame names)")
        parts_read = [read_deepmd(p) for p in paths]
        dataset = parts_read[0] if len(parts_read) == 1 else concatenate_datasets(parts_read)
    else:
        dataset, keys = read_extxyz_files(paths, energy_key=d.energy_key, forces_key=d.forces_key,
                                          stress_key=d.stress_key, virial_key=d.virial_key, key=d.split_key)
    path = Path(cfg.run_dir) / "dft_split.json"
    if keys is not None:  # a frame's subset follows from its name: the same for any number of frames
        parts = split_by_key(dataset, keys, d.split_fractions, d.split_seed)
    elif path.exists():
        return load_split(dataset, path)
    else:
        parts = split(dataset, d.split_fractions, d.split_seed)
    parts.save_indices(path)
    return parts


def fused_dft(cfg: Config, parts) -> FusedDFT | None:
    """The DFT term of a fused refinement (None without a dft section)."""
    d = cfg.dft
    if d is None:
        return None
    return FusedDFT(train=parts.train, test=parts.test, weight=d.fused_weight, batch_size=d.batch_size,
                    energy_weight=d.energy_weight, force_weight=d.force_weight, stress_weight=d.stress_weight,
                    eval_batch_size=d.eval_batch_size)


def train_settings(cfg: Config) -> TrainSettings:
    """TrainSettings of ``exprefine train`` from the dft section."""
    d = cfg.dft
    if d is None:
        raise ValueError("exprefine train needs a dft section with the labelled frames")
    t = d.train
    return TrainSettings(epochs=t.epochs, batch_size=d.batch_size, learning_rate=t.learning_rate,
                         energy_weight=d.energy_weight, force_weight=d.force_weight, stress_weight=d.stress_weight,
                         seed=t.seed, lr_schedule=t.lr_schedule, lr_factor=t.lr_factor, patience=t.patience,
                         early_stopping_patience=t.early_stopping_patience, max_grad_norm=t.max_grad_norm,
                         eval_batch_size=d.eval_batch_size)
