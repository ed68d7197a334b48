"""Turn a validated :class:`~exprefine.config.Config` into the objects of the Python API.

The CLI is a thin layer over these functions; a script can call them as well.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .config import (
    AdfConfig,
    Config,
    DeepmdConfig,
    DensityConfig,
    InterlayerSpacingConfig,
    LatticeConfig,
    LennardJonesConfig,
    MaceConfig,
    PairDispersionConfig,
    PairSplineConfig,
    PdfConfig,
    PeakPositionConfig,
    PressureConfig,
    RdfConfig,
    RepulsiveConfig,
    SamplingConfig,
    StructureFactorConfig,
    TargetConfig,
    ThreeBodyConfig,
    TotalRdfConfig,
    config_to_plain,
)
from .observables import (
    AngularDistribution,
    Density,
    InterlayerSpacing,
    Observable,
    PairDistributionFunction,
    PeakPosition,
    Pressure,
    RadialDistribution,
    StructureFactor,
    TotalRDF,
)
from .data import (concatenate_datasets, expand_paths, load_split, read_deepmd, read_extxyz_files, split,
                   split_by_key)
from .experiment import interpolate, load_table
from .io.lammps_table import lammps_overlay_lines, tabulate_pairs, write_pair_table
from .potentials import LennardJones, Potential, SumPotential
from .potentials.deepmd import DeepmdPotential
from .potentials.mace import MacePotential
from .potentials.repulsive import RepulsivePrior
from .potentials.dispersion import PairDispersion
from .potentials.spline import PairSpline
from .potentials.three_body import StillingerWeberThreeBody
from .refine import FusedDFT, GaussNewtonSettings, Refiner, RefinerSettings, Target
from .training import TrainSettings
from .io.checkpoint import load_checkpoint
from .sampling import BarostatSettings, SamplerSettings
from .state import State, from_atoms, read_state, replicate
from .units import PS_IN_FS, kelvin_to_eV
from .units import kJ_PER_MOL_IN_eV

_DTYPES = {"float32": torch.float32, "float64": torch.float64}

# number of atoms in the conventional cubic cell
_ATOMS_PER_CUBIC_CELL = {"fcc": 4, "bcc": 2, "sc": 1}


def lattice_atoms(cfg: LatticeConfig):
    """ASE Atoms of a cubic lattice whose constant gives the requested number density."""
    from ase.build import bulk

    a = (_ATOMS_PER_CUBIC_CELL[cfg.kind] / cfg.number_density_per_A3) ** (1.0 / 3.0)
    try:
        atoms = bulk(cfg.element, cfg.kind, a=a, cubic=True)
    except Exception as exc:
        raise ValueError(f"cannot build a {cfg.kind} lattice of {cfg.element!r}: {exc}") from None
    return atoms.repeat(cfg.repeat)


def build_state(cfg: Config) -> State:
    """The starting configuration, replicated ``system.n_replicas`` times."""
    dtype = _DTYPES[cfg.system.dtype]
    if cfg.system.lattice is not None:
        state = from_atoms(lattice_atoms(cfg.system.lattice), dtype=dtype)
    else:
        state = read_state(cfg.system.structure_file, dtype=dtype)  # type: ignore[arg-type]
        if state.n_systems != 1:
            raise ValueError(f"{cfg.system.structure_file}: expected one structure, found {state.n_systems}")
    state.velocities = None
    return replicate(state, cfg.system.n_replicas) if cfg.system.n_replicas > 1 else state


def _lj_epsilon_eV(term: LennardJonesConfig) -> float | list[float]:
    if term.epsilon_eV is not None:
        return term.epsilon_eV
    eps_K = term.epsilon_K
    if isinstance(eps_K, list):
        return [kelvin_to_eV(e) for e in eps_K]
    return kelvin_to_eV(eps_K)  # type: ignore[arg-type]


def _kJ_per_mol_to_eV(value: float | list[float]) -> float | list[float]:
    if isinstance(value, list):
        return [v * kJ_PER_MOL_IN_eV for v in value]
    return value * kJ_PER_MOL_IN_eV


def build_potential(cfg: Config) -> Potential:
    """The potential of ``cfg.potential`` (parameters from ``initial_checkpoint`` if given)."""
    terms: list[Potential] = []
    for term in cfg.potential.terms:
        if isinstance(term, LennardJonesConfig):
            terms.append(LennardJones(term.species, term.sigma_A, _lj_epsilon_eV(term), term.cutoff_A,
                                      trainable=term.trainable))
        elif isinstance(term, PairSplineConfig):
            spline = PairSpline(term.species, cutoff_A=term.cutoff_A, r_min_A=term.r_min_A, n_knots=term.n_knots,
                                trainable=term.trainable)
            terms.append(spline)
        elif isinstance(term, PairDispersionConfig):
            terms.append(PairDispersion(term.species, term.cutoff_A, c6_eV_A6=term.c6_eV_A6, c8_eV_A8=term.c8_eV_A8,
                                        damping_radius_A=term.damping_radius_A, switch_on_A=term.switch_on_A,
                                        trainable=term.trainable))
        elif isinstance(term, MaceConfig):
            terms.append(MacePotential.from_file(term.model_file, dtype=_DTYPES[cfg.system.dtype],
                                                 trainable=term.trainable, head=term.head, skin_A=term.skin_A))
        elif isinstance(term, DeepmdConfig):
            terms.append(DeepmdPotential.from_file(term.checkpoint_file, dtype=_DTYPES[cfg.system.dtype],
                                                   trainable=term.trainable, head=term.head))
        elif isinstance(term, ThreeBodyConfig):
            cos_theta0 = (term.cos_theta0 if term.cos_theta0 is not None
                          else math.cos(math.radians(term.theta0_deg)))  # type: ignore[arg-type]
            epsilon_eV = term.epsilon_eV if term.epsilon_eV is not None else _kJ_per_mol_to_eV(term.epsilon_kJ_per_mol)
            terms.append(StillingerWeberThreeBody(term.species, term.lambda_ * epsilon_eV, cos_theta0, term.gamma,
                                                  term.sigma_A, term.a, trainable=term.trainable))
        elif isinstance(term, RepulsiveConfig):
            epsilon_eV = term.epsilon_eV if term.epsilon_eV is not None else _kJ_per_mol_to_eV(term.epsilon_kJ_per_mol)
            terms.append(RepulsivePrior(term.species, term.sigma_A, epsilon_eV, term.cutoff_A))
        else:  # pragma: no cover - the schema admits nothing else
            raise ValueError(f"unknown potential term {term!r}")
    potential = SumPotential(terms)
    potential = potential.to(_DTYPES[cfg.system.dtype])
    if cfg.potential.initial_checkpoint is not None:
        load_potential_state(potential, cfg.potential.initial_checkpoint)
    return potential


def save_native_models(cfg: Config, potential: Potential) -> list[Path]:
    """Write every term that has a native file format next to the run; the paths written.

    MACE terms: a ``.model`` file. DeePMD terms: a ``dp --pt train``-style checkpoint (``.pt``)
    and the frozen model made from it (``.pth``, for LAMMPS ``pair_style deepmd``), in that order.
    """
    terms = potential.terms if isinstance(potential, SumPotential) else [potential]
    native = [(c, t) for c, t in zip(cfg.potential.terms, terms) if isinstance(c, MaceConfig)]
    written = []
    for k, (term_cfg, term) in enumerate(native):
        default = Path(cfg.run_dir) / ("refined.model" if len(native) == 1 else f"refined_{k}.model")
        written.append(term.save_model(term_cfg.save_model_file or default))
    deepmd = [(c, t) for c, t in zip(cfg.potential.terms, terms) if isinstance(c, DeepmdConfig)]
    for k, (term_cfg, term) in enumerate(deepmd):
        stem = Path(cfg.run_dir) / ("refined_deepmd" if len(deepmd) == 1 else f"refined_deepmd_{k}")
        checkpoint = term.save_checkpoint(term_cfg.save_checkpoint_file or stem.with_suffix(".pt"))
        written += [checkpoint, term.freeze(term_cfg.freeze_file or stem.with_suffix(".pth"), checkpoint=checkpoint)]
    written += save_pair_correction(cfg, potential)
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
    terms = potential.terms if isinstance(potential, SumPotential) else [potential]
    pairs = [t for c, t in zip(cfg.potential.terms, terms) if isinstance(c, _PAIR_CORRECTIONS)]
    if not pairs:
        return []
    species = list(dict.fromkeys(s for c in cfg.potential.terms if isinstance(c, _PAIR_CORRECTIONS) for s in c.species))
    run_dir = Path(cfg.run_dir)
    tables = tabulate_pairs(pairs, species)
    table_file = write_pair_table(run_dir / "refined_pairs.table", tables,
                                  comment=f"learned pair correction of {run_dir.name} (exprefine)")
    models = [c for c in cfg.potential.terms if isinstance(c, (DeepmdConfig, MaceConfig))]
    if len(models) == 1 and isinstance(models[0], DeepmdConfig):
        lines = lammps_overlay_lines("deepmd", "refined_deepmd.pth", species, table_file.name, tables)
    elif len(models) == 1:
        lines = lammps_overlay_lines("mace", "refined.model-lammps.pt", species, table_file.name, tables)
    else:
        lines = f"pair_style table spline {len(tables[0].r_A)}\n" + "".join(
            f"pair_coeff {species.index(t.species[0]) + 1} {species.index(t.species[1]) + 1} table "
            f"{table_file.name} {t.keyword} {t.cutoff_A:.10g}\n" for t in tables)
    note = (f"# LAMMPS atom types: {' '.join(f'{k + 1}={s}' for k, s in enumerate(species))}; "
            "the table must be read in metal units\n")
    lines_file = run_dir / "refined_pairs.lammps"
    lines_file.write_text(note + lines)
    return [table_file, lines_file]


def term_learning_rates(cfg: Config, potential: Potential) -> dict[int, float]:
    """Step sizes of the terms that set their own (by parameter identity), for the Refiner."""
    rates: dict[int, float] = {}
    terms = potential.terms if isinstance(potential, SumPotential) else [potential]
    for term_cfg, term in zip(cfg.potential.terms, terms):
        lr = getattr(term_cfg, "learning_rate", None) or getattr(term_cfg, "learning_rate_eV", None)
        if lr is not None:
            for p in term.parameters():
                rates[id(p)] = float(lr)
        if isinstance(term_cfg, LennardJonesConfig):
            # g(r) fixes σ far more tightly than ε: each may take its own step
            if term_cfg.sigma_learning_rate is not None:
                rates[id(term.log_sigma)] = term_cfg.sigma_learning_rate
            if term_cfg.epsilon_learning_rate is not None:
                rates[id(term.log_epsilon)] = term_cfg.epsilon_learning_rate
    return rates


def load_potential_state(potential: Potential, checkpoint_path) -> None:
    """Load the parameters stored in a checkpoint or final model file into ``potential``."""
    data = load_checkpoint(checkpoint_path)
    try:
        potential.load_state_dict(data["potential_state"])
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


def build_observable(obs_cfg, temperature_K: float) -> Observable:
    if isinstance(obs_cfg, RdfConfig):
        return RadialDistribution(
            r_max_A=obs_cfg.r_max_A,
            r_min_A=obs_cfg.r_min_A,
            bin_width_A=obs_cfg.bin_width_A,
            smoothing_A=obs_cfg.smoothing_A,
            species=obs_cfg.species,
        )
    if isinstance(obs_cfg, PressureConfig):
        return Pressure(temperature_K=temperature_K)
    if isinstance(obs_cfg, DensityConfig):
        return Density("mass")
    if isinstance(obs_cfg, TotalRdfConfig):
        return TotalRDF(r_max_A=obs_cfg.r_max_A, bin_width_A=obs_cfg.bin_width_A, r_min_A=obs_cfg.r_min_A,
                        smoothing_A=obs_cfg.smoothing_A, radiation=obs_cfg.radiation)
    if isinstance(obs_cfg, PdfConfig):
        return PairDistributionFunction(r_max_A=obs_cfg.r_max_A, bin_width_A=obs_cfg.bin_width_A,
                                        smoothing_A=obs_cfg.smoothing_A, radiation=obs_cfg.radiation,
                                        q_max_inv_A=obs_cfg.q_max_inv_A, lorch=obs_cfg.lorch,
                                        q_damping_A=obs_cfg.q_damping_A)
    if isinstance(obs_cfg, StructureFactorConfig):
        n = int(math.floor((obs_cfg.q_max_inv_A - obs_cfg.q_min_inv_A) / obs_cfg.q_step_inv_A + 1e-9)) + 1
        q = obs_cfg.q_min_inv_A + obs_cfg.q_step_inv_A * torch.arange(n, dtype=torch.float64)
        return StructureFactor(q, radiation=obs_cfg.radiation, quantity=obs_cfg.quantity, direct=obs_cfg.direct,
                               r_max_A=obs_cfg.r_max_A, bin_width_A=None if obs_cfg.direct else obs_cfg.bin_width_A,
                               smoothing_A=obs_cfg.smoothing_A, r_window=obs_cfg.r_window)
    if isinstance(obs_cfg, PeakPositionConfig):
        return PeakPosition(build_observable(obs_cfg.of, temperature_K), obs_cfg.window)
    if isinstance(obs_cfg, InterlayerSpacingConfig):
        return InterlayerSpacing(obs_cfg.n_layers, obs_cfg.axis)
    if isinstance(obs_cfg, AdfConfig):
        return AngularDistribution(species=obs_cfg.species, r_max_A=obs_cfg.r_max_A, r_min_A=obs_cfg.r_min_A,
                                   n_bins=obs_cfg.n_bins, smoothing_deg=obs_cfg.smoothing_deg,
                                   angle_unit=obs_cfg.angle_unit)
    raise ValueError(f"unknown observable {obs_cfg!r}")  # pragma: no cover


def build_target(t: TargetConfig, temperature_K: float) -> Target:
    """A Target: the observable plus the measured data interpolated onto its grid."""
    observable = build_observable(t.observable, temperature_K)
    scalar = t.scalar_value
    if scalar is not None:
        value, sigma = scalar
        return Target(name=t.name, observable=observable, reference=torch.tensor(value, dtype=torch.float64),
                      sigma=None if sigma is None else torch.tensor(sigma, dtype=torch.float64), weight=t.weight)
    assert t.data is not None
    data = load_table(t.data.file, x_column=t.data.x_column, y_column=t.data.y_column,
                      sigma_column=t.data.sigma_column, x_unit=t.data.x_unit)
    grid = observable.grid()
    assert grid is not None
    grid_np = grid.detach().cpu().numpy()
    lo, hi = t.fit_range if t.fit_range is not None else (float(data.x[0]), float(data.x[-1]))
    covered = (grid_np >= data.x[0]) & (grid_np <= data.x[-1])
    mask = covered & (grid_np >= lo) & (grid_np <= hi)
    if not mask.any():
        raise ValueError(f"target {t.name}: no grid point of the observable lies inside the fit range "
                         f"[{lo}, {hi}] and the data range [{data.x[0]:.4g}, {data.x[-1]:.4g}]")
    # the measurement on the grid where the data reach (NaN elsewhere); only the mask enters the loss
    y = torch.full((len(grid_np),), float("nan"), dtype=torch.float64)
    sig = None
    y_in, s_in = interpolate(data, grid_np[covered])
    y[torch.from_numpy(covered)] = torch.as_tensor(y_in, dtype=torch.float64)
    if s_in is not None:
        sig = torch.ones(len(grid_np), dtype=torch.float64)
        sig[torch.from_numpy(covered)] = torch.as_tensor(s_in, dtype=torch.float64)
    return Target(name=t.name, observable=observable, reference=y, sigma=sig,
                  mask=torch.from_numpy(mask), weight=t.weight)


def _format_fractions(fractions: dict[str, float]) -> str:
    return ", ".join(f"{el} {x:.3f}" for el, x in sorted(fractions.items()))


def check_data_metadata(cfg: Config, state: State) -> None:
    """One-line errors when a data file's stated composition or density contradicts the simulated system."""
    from collections import Counter

    from ase.data import chemical_symbols

    first = state.system_idx == 0
    counts = Counter(chemical_symbols[int(z)] for z in state.atomic_numbers[first].tolist())
    n_atoms = sum(counts.values())
    for t in cfg.targets:
        d = t.data
        if d is None:
            continue
        if d.composition is not None:
            total = sum(d.composition.values())
            stated = {el: v / total for el, v in d.composition.items() if v > 0}
            system = {el: n / n_atoms for el, n in counts.items()}
            if set(stated) != set(system) or any(abs(stated[el] - system[el]) > 1e-3 for el in stated):
                raise ValueError(f"target {t.name}: {d.file.name} states the composition "
                                 f"{_format_fractions(stated)} but the system has {_format_fractions(system)}")
        if d.number_density_per_A3 is not None and cfg.sampling.pressure_bar is None:
            rho = n_atoms / float(state.volume_A3()[0])
            if abs(rho / d.number_density_per_A3 - 1) > 0.02:
                raise ValueError(f"target {t.name}: {d.file.name} was measured at {d.number_density_per_A3:g} Å⁻³ "
                                 f"but the system's cell holds {rho:.5g} Å⁻³ (NVT)")


def build_targets(cfg: Config) -> list[Target]:
    return [build_target(t, cfg.sampling.temperature_K) for t in cfg.targets]


def refiner_settings(cfg: Config, progress: bool = True) -> RefinerSettings:
    r = cfg.refine
    return RefinerSettings(
        n_updates=r.n_updates,
        learning_rate=r.learning_rate,
        learning_rate_decay=r.learning_rate_decay,
        ess_threshold=r.ess_threshold,
        chunk_size=r.chunk_size,
        resample_equilibration_steps=int(round(cfg.sampling.resample_equilibration_ps * PS_IN_FS
                                               / cfg.sampling.timestep_fs)),
        max_rollbacks=r.max_rollbacks,
        final_check=r.final_check,
        progress=progress,
        optimizer=r.optimizer,
        adam_betas=(r.adam_beta1, r.adam_beta2),
        gauss_newton=GaussNewtonSettings(initial_damping=r.initial_damping, max_step_kT=r.max_step_kT),
    )


def build_refiner(cfg: Config, progress: bool = True) -> Refiner:
    """Everything a refinement needs, from one config."""
    if not cfg.targets:
        raise ValueError("the config has no targets to refine against")
    potential = build_potential(cfg)
    start = build_state(cfg)
    check_data_metadata(cfg, start)
    return Refiner(
        potential=potential,
        targets=build_targets(cfg),
        sampler_settings=sampler_settings(cfg.sampling),
        start=start,
        settings=refiner_settings(cfg, progress),
        run_dir=cfg.run_dir,
        config=config_to_plain(cfg),
        learning_rates=term_learning_rates(cfg, potential),
        dft=fused_dft(cfg, build_dft_split(cfg)) if cfg.dft is not None else None,
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
