"""The YAML configuration, validated by pydantic: unknown keys are rejected and units are in key names.

Relative paths in a config file are resolved against the file's own folder. The
resolved configuration (defaults filled in, paths absolute) is saved with every run.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterator, Literal, Union, get_args, get_origin

import torch
import yaml
from ase.data import chemical_symbols
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from .observables import (
    AngularDistribution,
    BulkModulus,
    Density,
    ElasticConstant,
    HeatCapacity,
    InterlayerSpacing,
    LatticeParameter,
    Observable,
    PairDistributionFunction,
    PeakPosition,
    Pressure,
    RadialDistribution,
    StructureFactor,
    TotalRDF,
)
from .potentials import (
    DeepmdPotential,
    LennardJones,
    MacePotential,
    PairDispersion,
    PairSpline,
    Potential,
    RepulsivePrior,
    StillingerWeberPair,
    StillingerWeberThreeBody,
)
from .potentials.dftd3 import D3Dispersion, D3Parameters, save_d3_parameters
from .units import BOLTZMANN_eV_per_K, kJ_PER_MOL_IN_eV


class ConfigError(ValueError):
    """A configuration problem, described in one line naming the file and the key."""


class _Strict(BaseModel):
    """Unknown keys are refused; ``_renamed`` maps keys of earlier versions to their new names."""

    model_config = ConfigDict(extra="forbid", frozen=False)
    _renamed: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_renamed(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for old, new in cls._renamed.items():
                if old in data:
                    raise ValueError(f"{old!r} was renamed {new!r}")
        return data


_ELEMENTS = frozenset(chemical_symbols[1:])


def _element_symbol(symbol: str) -> str:
    """``symbol`` if it is a chemical element's symbol; else a one-line error (suggesting the capitalised form)."""
    if symbol in _ELEMENTS:
        return symbol
    hint = f" (did you mean {symbol.capitalize()!r}?)" if symbol.capitalize() in _ELEMENTS else ""
    raise ValueError(f"unknown element symbol {symbol!r}{hint}")


#: a chemical element's symbol (Ar, C, N, ...), checked when the config is read
Element = Annotated[str, AfterValidator(_element_symbol)]


# --------------------------------------------------------------------- system
class LatticeConfig(_Strict):
    """A cubic lattice of one element at a given number density (a liquid's starting point, or a crystal).

    ``repeat``: the conventional cubic cell repeated [na, nb, nc] times, or one number n for [n, n, n].
    """

    element: Element
    kind: Literal["fcc", "bcc", "sc", "diamond"] = "fcc"
    number_density_per_A3: float = Field(gt=0)
    repeat: tuple[int, int, int] = (5, 5, 5)

    @field_validator("repeat", mode="before")
    @classmethod
    def _one_number_for_all(cls, v: Any) -> Any:
        return (v, v, v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("repeat")
    @classmethod
    def _positive_repeat(cls, v: tuple[int, int, int]) -> tuple[int, int, int]:
        if min(v) < 1:
            raise ValueError("every repeat must be ≥ 1")
        return v


class SystemConfig(_Strict):
    """Exactly one of ``structure_file`` (any format ASE reads) and ``lattice``."""

    structure_file: Path | None = None
    lattice: LatticeConfig | None = None
    n_replicas: int = Field(default=1, ge=1)
    #: MD chains the replicas run as (each a batch with its own random stream; under torchrun the chains are
    #: spread over the ranks, and the groups — not the ranks — fix the trajectories)
    replica_groups: int = Field(default=1, ge=1)
    dtype: Literal["float32", "float64"] = "float64"
    #: refinement only: a trajectory file (``.pt``) already sampled at this state point with the starting
    #: parameters — e.g. an earlier run's long check, with that run's ``final_model.pt`` as
    #: ``potential.initial_checkpoint``; the first update reweights it instead of sampling (long
    #: trajectories give parameters with less sampling noise), later MD continues from its last frames
    start_trajectory_file: Path | None = None

    @model_validator(mode="after")
    def _one_source(self) -> "SystemConfig":
        if (self.structure_file is None) == (self.lattice is None):
            raise ValueError("give exactly one of structure_file and lattice")
        if self.replica_groups > self.n_replicas:
            raise ValueError(f"replica_groups ({self.replica_groups}) cannot exceed n_replicas ({self.n_replicas})")
        return self


# ------------------------------------------------------------------ potential
#: an energy parameter in eV, K (ε/k_B) or kJ/mol: exactly one of the three keys
ENERGY_UNITS = {"eV": 1.0, "K": BOLTZMANN_eV_per_K, "kJ_per_mol": kJ_PER_MOL_IN_eV}


def _energy_eV(cfg: BaseModel, name: str) -> float | list[float]:
    """The energy parameter ``name`` (e.g. ``epsilon``) in eV from whichever of ``name_eV``,
    ``name_K``, ``name_kJ_per_mol`` the config gives."""
    given = [(unit, getattr(cfg, f"{name}_{unit}")) for unit in ENERGY_UNITS if getattr(cfg, f"{name}_{unit}") is not None]
    unit, value = given[0]
    factor = ENERGY_UNITS[unit]
    return [v * factor for v in value] if isinstance(value, list) else value * factor


def _one_energy(cfg: BaseModel, name: str) -> None:
    keys = [f"{name}_{unit}" for unit in ENERGY_UNITS]
    if sum(getattr(cfg, k) is not None for k in keys) != 1:
        raise ValueError(f"give exactly one of {keys[0]} and {keys[1]} (or {keys[2]})")


class PriorConfig(_Strict):
    """A Gaussian prior on one trainable parameter of a term: adds Σ ((θ − mean)/sigma)² to the loss
    (:mod:`exprefine.refine.prior`). One value, or one per element of the parameter, each."""

    mean: float | list[float]
    sigma: float | list[float]

    @model_validator(mode="after")
    def _positive_sigma(self) -> "PriorConfig":
        sigmas = self.sigma if isinstance(self.sigma, list) else [self.sigma]
        if not sigmas or any(not (math.isfinite(x) and x > 0) for x in sigmas):
            raise ValueError(f"sigma must be positive and finite, got {self.sigma}")
        return self


def _literal_values(annotation: Any) -> tuple[str, ...]:
    """Every string of the ``Literal`` types inside ``annotation`` (e.g. ``bool | list[Literal["a", "b"]]``)."""
    if get_origin(annotation) is Literal:
        return tuple(v for v in get_args(annotation) if isinstance(v, str))
    return tuple(v for arg in get_args(annotation) for v in _literal_values(arg))


class _Term(_Strict):
    """A potential term: builds its Potential, its step sizes and (if it has one) its native model file.

    ``prior``: Gaussian priors on the term's trainable parameters, by the parameter's name in the
    term (e.g. ``{s6: {mean: 1.0, sigma: 0.1}}`` for D3), in the parameter's own representation.
    """

    prior: dict[str, PriorConfig] = {}

    def build(self, dtype: torch.dtype) -> Potential:
        raise NotImplementedError

    def trainable_choices(self) -> tuple[str, ...]:
        """The names this kind's ``trainable`` list accepts (empty where it takes presets or a bool only)."""
        field = type(self).model_fields.get("trainable")
        return _literal_values(field.annotation) if field is not None else ()

    def learning_rates(self, term: Potential) -> dict[int, float]:
        """Adam step sizes of the term's parameters (by identity) that differ from ``refine.learning_rate``."""
        lr = getattr(self, "learning_rate", None)
        return {id(p): float(lr) for p in term.parameters()} if lr is not None else {}

    def save_native(self, term: Potential, run_dir: Path, index: int, count: int) -> list[Path]:
        """Write the term in its own package's format; ``index`` of ``count`` terms of its kind. Nothing by default."""
        return []


class _SigmaEpsilonPairs(_Term):
    """A pair term with σ (Å) and ε (eV, K or kJ/mol) per species pair and a cutoff (Å)."""

    species: list[Element]
    sigma_A: float | list[float]
    epsilon_eV: float | list[float] | None = None
    epsilon_K: float | list[float] | None = None
    epsilon_kJ_per_mol: float | list[float] | None = None
    cutoff_A: float = Field(gt=0)

    @model_validator(mode="after")
    def _one_epsilon(self) -> "_SigmaEpsilonPairs":
        _one_energy(self, "epsilon")
        return self


class LennardJonesConfig(_SigmaEpsilonPairs):
    kind: Literal["lennard_jones"]
    trainable: bool = True
    learning_rate: float | None = Field(default=None, gt=0)  # Adam step in ln σ, ln ε (default: refine's)
    sigma_learning_rate: float | None = Field(default=None, gt=0)  # Adam step in ln σ alone
    epsilon_learning_rate: float | None = Field(default=None, gt=0)  # Adam step in ln ε alone

    def build(self, dtype: torch.dtype) -> Potential:
        return LennardJones(self.species, self.sigma_A, _energy_eV(self, "epsilon"), self.cutoff_A,
                            trainable=self.trainable)

    def learning_rates(self, term: Potential) -> dict[int, float]:
        rates = super().learning_rates(term)
        # g(r) fixes σ far more tightly than ε: each may take its own step
        if self.sigma_learning_rate is not None:
            rates[id(getattr(term, "log_sigma"))] = self.sigma_learning_rate
        if self.epsilon_learning_rate is not None:
            rates[id(getattr(term, "log_epsilon"))] = self.epsilon_learning_rate
        return rates


class PairSplineConfig(_Term):
    kind: Literal["pair_spline"]
    species: list[Element]
    r_min_A: float = Field(ge=0)
    cutoff_A: float = Field(gt=0)
    n_knots: int = Field(ge=4)
    trainable: bool = True
    learning_rate: float | None = Field(default=None, gt=0)  # Adam step of the knot values in eV (default: refine's)

    _renamed: ClassVar[dict[str, str]] = {"learning_rate_eV": "learning_rate"}

    @model_validator(mode="after")
    def _range(self) -> "PairSplineConfig":
        if self.cutoff_A <= self.r_min_A:
            raise ValueError("cutoff_A must be larger than r_min_A")
        return self

    def build(self, dtype: torch.dtype) -> Potential:
        return PairSpline(self.species, cutoff_A=self.cutoff_A, r_min_A=self.r_min_A, n_knots=self.n_knots,
                          trainable=self.trainable)


class PairDispersionConfig(_Term):
    """Learnable damped dispersion −(C6/(r⁶ + R⁶) + C8/(r⁸ + R⁸))·s(r) per species pair
    (:class:`~exprefine.potentials.dispersion.PairDispersion`).

    Values: one for all species pairs or one per unordered pair (upper triangle, row-major:
    for ``species: [C, N]``: CC, CN, NN). ``s6``, ``s8``: global scales of the C6 and C8 terms
    (D3's own fit parameters, 1 by default). ``trainable``: true (C6, C8 and R), false, or a
    list of ``c6``, ``c8``, ``damping_radius``, ``s6``, ``s8``. The term switches off smoothly between ``switch_on_A``
    (default cutoff − 2 Å) and ``cutoff_A``.
    """

    kind: Literal["pair_dispersion"]
    species: list[Element]
    cutoff_A: float = Field(gt=0)
    switch_on_A: float | None = Field(default=None, gt=0)
    c6_eV_A6: float | list[float] = 0.0
    c8_eV_A8: float | list[float] = 0.0
    damping_radius_A: float | list[float] = 3.5
    s6: float = 1.0
    s8: float = 1.0
    trainable: bool | list[Literal["c6", "c8", "damping_radius", "s6", "s8"]] = True
    learning_rate: float | None = Field(default=None, gt=0)  # Adam step in C6, C8, ln R, s6, s8 (default: refine's)

    @model_validator(mode="after")
    def _switch(self) -> "PairDispersionConfig":
        if self.switch_on_A is not None and self.switch_on_A >= self.cutoff_A:
            raise ValueError("switch_on_A must be smaller than cutoff_A")
        return self

    def build(self, dtype: torch.dtype) -> Potential:
        return PairDispersion(self.species, self.cutoff_A, c6_eV_A6=self.c6_eV_A6, c8_eV_A8=self.c8_eV_A8,
                              damping_radius_A=self.damping_radius_A, switch_on_A=self.switch_on_A,
                              trainable=self.trainable, s6=self.s6, s8=self.s8)


class D3Config(_Term):
    """Grimme's D3(BJ) dispersion from the ``dftd3`` package
    (:class:`~exprefine.potentials.dftd3.D3Dispersion`), coordination-dependent C6 included.

    ``s6``, ``s8``, ``a1`` and ``a2_bohr``: the rational-damping parameters of the functional
    the model was trained on (PBE: 1.0, 0.7875, 0.4289, 4.4407). ``trainable``: any of ``s6``
    and ``s8``, D3's global scales (start them at 0 to refine a dispersion correction from the
    base model on), and ``a1`` and ``a2`` (the Becke–Johnson damping, ``a2`` in bohr; their energy
    derivatives are finite differences, two more D3 evaluations per frame each — give them priors,
    structure data fix few combinations of four D3 parameters). ``s9`` > 0 adds the three-body term (slow).
    Needs ``pip install 'exprefine[reference]'``.
    """

    kind: Literal["dftd3"]
    s6: float = 1.0
    s8: float
    a1: float
    a2_bohr: float
    s9: float = 0.0
    cutoff_two_body_bohr: float = Field(default=40.0, gt=0)
    cutoff_coordination_bohr: float = Field(default=40.0, gt=0)
    trainable: list[Literal["s6", "s8", "a1", "a2"]] = []
    learning_rate: float | None = Field(default=None, gt=0)  # Adam step in D3's parameters (default: refine's)

    def build(self, dtype: torch.dtype) -> Potential:
        settings = D3Parameters(s6=self.s6, s8=self.s8, a1=self.a1, a2=self.a2_bohr, s9=self.s9,
                                cutoff_two_body_bohr=self.cutoff_two_body_bohr,
                                cutoff_coordination_bohr=self.cutoff_coordination_bohr)
        return D3Dispersion(settings, trainable=tuple(self.trainable))

    def save_native(self, term: Potential, run_dir: Path, index: int, count: int) -> list[Path]:
        assert isinstance(term, D3Dispersion)
        stem = "refined_d3bj" if count == 1 else f"refined_d3bj_{index}"
        return [save_d3_parameters(term, run_dir / f"{stem}.json")]


class MaceConfig(_Term):
    """A MACE model file (mace-torch; extra ``exprefine[mace]``).

    ``trainable``: presets (all, none, readouts, last_interaction, embedding, radial),
    globs over parameter names, or ``re:<regex>``. The refined model is written as a
    MACE ``.model`` file to ``save_model_file`` (default: ``run_dir/refined.model``).
    """

    kind: Literal["mace"]
    model_file: Path
    trainable: str | list[str] = "all"
    head: str | None = None
    skin_A: float = Field(default=1.0, ge=0)
    learning_rate: float | None = Field(default=None, gt=0)
    save_model_file: Path | None = None

    def build(self, dtype: torch.dtype) -> Potential:
        return MacePotential.from_file(self.model_file, dtype=dtype, trainable=self.trainable, head=self.head,
                                       skin_A=self.skin_A)

    def save_native(self, term: Potential, run_dir: Path, index: int, count: int) -> list[Path]:
        assert isinstance(term, MacePotential)
        default = run_dir / ("refined.model" if count == 1 else f"refined_{index}.model")
        return [term.save_model(self.save_model_file or default)]


class ThreeBodyConfig(_Term):
    """Stillinger–Weber three-body term λε (cos θ − cos θ₀)² exp(γσ/(r_ij − aσ)) exp(γσ/(r_ik − aσ)), r < aσ.

    Trained: ln(λε), cos θ₀, ln γ (``trainable``: true, false or a list of
    ``lambda_epsilon``, ``cos_theta0``, ``gamma``); σ and a (cutoff aσ) are fixed.
    """

    kind: Literal["stillinger_weber_3b"]
    species: list[Element]
    epsilon_eV: float | None = Field(default=None, gt=0)
    epsilon_K: float | None = Field(default=None, gt=0)
    epsilon_kJ_per_mol: float | None = Field(default=None, gt=0)
    lambda_: float = Field(gt=0)
    cos_theta0: float | None = None
    theta0_deg: float | None = Field(default=None, ge=0, le=180)
    gamma: float = Field(gt=0)
    sigma_A: float = Field(gt=0)
    a: float = Field(gt=0)
    trainable: bool | list[Literal["lambda_epsilon", "cos_theta0", "gamma"]] = True
    learning_rate: float | None = Field(default=None, gt=0)  # Adam step in ln λε, cos θ₀, ln γ (default: refine's)

    @model_validator(mode="after")
    def _one_each(self) -> "ThreeBodyConfig":
        _one_energy(self, "epsilon")
        if (self.cos_theta0 is None) == (self.theta0_deg is None):
            raise ValueError("give exactly one of cos_theta0 and theta0_deg")
        return self

    def build(self, dtype: torch.dtype) -> Potential:
        if self.cos_theta0 is not None:
            cos_theta0 = self.cos_theta0
        else:
            assert self.theta0_deg is not None
            cos_theta0 = math.cos(math.radians(self.theta0_deg))
        epsilon = _energy_eV(self, "epsilon")
        assert isinstance(epsilon, float)
        return StillingerWeberThreeBody(self.species, self.lambda_ * epsilon, cos_theta0, self.gamma, self.sigma_A,
                                        self.a, trainable=self.trainable)


class StillingerWeberPairConfig(_Term):
    """Stillinger–Weber two-body term A ε [B (σ/r)^p − (σ/r)^q] exp(σ/(r − aσ)), r < aσ.

    Trained: ln ε and ln B (``trainable``: true, false or a list of ``epsilon``, ``B``); σ, a,
    A, p, q are fixed. With ``stillinger_weber_3b`` (λε = λ·ε, same σ and a) it is the full
    potential; silicon: ε = 2.1683 eV, σ = 2.0951 Å, a = 1.8, A = 7.049556277,
    B = 0.6022245584, p = 4, q = 0 (and λ = 21, γ = 1.2, θ₀ = 109.47°).
    """

    kind: Literal["stillinger_weber_2b"]
    species: list[Element]
    epsilon_eV: float | None = Field(default=None, gt=0)
    epsilon_K: float | None = Field(default=None, gt=0)
    epsilon_kJ_per_mol: float | None = Field(default=None, gt=0)
    sigma_A: float = Field(gt=0)
    a: float = Field(gt=0)
    A: float = Field(gt=0)
    B: float = Field(gt=0)
    p: float = 4.0
    q: float = 0.0
    trainable: bool | list[Literal["epsilon", "B"]] = True
    learning_rate: float | None = Field(default=None, gt=0)  # Adam step in ln ε, ln B (default: refine's)

    @model_validator(mode="after")
    def _one_each(self) -> "StillingerWeberPairConfig":
        _one_energy(self, "epsilon")
        return self

    def build(self, dtype: torch.dtype) -> Potential:
        epsilon = _energy_eV(self, "epsilon")
        assert isinstance(epsilon, float)
        return StillingerWeberPair(self.species, epsilon, self.sigma_A, self.a, self.A, self.B, self.p, self.q,
                                   trainable=self.trainable)


class RepulsiveConfig(_SigmaEpsilonPairs):
    """Fixed prior 4ε(σ/r)¹², shifted to zero at ``cutoff_A``; not trainable."""

    kind: Literal["repulsive_r12"]

    def build(self, dtype: torch.dtype) -> Potential:
        return RepulsivePrior(self.species, self.sigma_A, _energy_eV(self, "epsilon"), self.cutoff_A)


class DeepmdConfig(_Term):
    """A DeePMD-kit model (PyTorch backend; ``bash scripts/install_deepmd.sh``).

    ``checkpoint_file``: a ``dp --pt train`` checkpoint (``.pt``) or a frozen model (``.pth``).
    ``trainable``: presets (all, none, fitting, descriptor, fitting_last_layer,
    type_embedding), globs over parameter names, or ``re:<regex>``. The refined model is written
    as a checkpoint to ``save_checkpoint_file`` (default ``run_dir/refined_deepmd.pt``) and
    frozen for LAMMPS ``pair_style deepmd`` to ``freeze_file`` (default ``run_dir/refined_deepmd.pth``).
    """

    kind: Literal["deepmd"]
    checkpoint_file: Path
    trainable: str | list[str] = "all"
    head: str | None = None
    learning_rate: float | None = Field(default=None, gt=0)
    save_checkpoint_file: Path | None = None
    freeze_file: Path | None = None

    def build(self, dtype: torch.dtype) -> Potential:
        return DeepmdPotential.from_file(self.checkpoint_file, dtype=dtype, trainable=self.trainable, head=self.head)

    def save_native(self, term: Potential, run_dir: Path, index: int, count: int) -> list[Path]:
        assert isinstance(term, DeepmdPotential)
        stem = run_dir / ("refined_deepmd" if count == 1 else f"refined_deepmd_{index}")
        checkpoint = term.save_checkpoint(self.save_checkpoint_file or stem.with_suffix(".pt"))
        return [checkpoint, term.freeze(self.freeze_file or stem.with_suffix(".pth"), checkpoint=checkpoint)]


#: every kind of potential term a config may name (the registry: a new kind is a _Term subclass added here)
PotentialTerm = Annotated[Union[LennardJonesConfig, PairSplineConfig, PairDispersionConfig, D3Config, MaceConfig,
                                ThreeBodyConfig, StillingerWeberPairConfig, RepulsiveConfig, DeepmdConfig],
                          Field(discriminator="kind")]


class PotentialConfig(_Strict):
    """A sum of terms; ``initial_checkpoint`` loads parameters saved by an earlier run.

    ``concurrent_terms`` evaluates the terms' forces and stress side by side, one thread per term
    (:class:`~exprefine.potentials.sum.SumPotential`): worth it for an MLIP next to D3 on a machine
    with a core free for each; the same numbers up to the order of additions.
    """

    terms: list[PotentialTerm] = Field(min_length=1)
    initial_checkpoint: Path | None = None
    concurrent_terms: bool = False


# ------------------------------------------------------------------- sampling
class SamplingConfig(_Strict):
    integrator: Literal["baoab", "nose_hoover_chain", "velocity_verlet"] = "baoab"
    temperature_K: float = Field(gt=0)
    timestep_fs: float = Field(gt=0)
    friction_per_ps: float = Field(default=1.0, gt=0)
    thermostat_time_fs: float = Field(default=100.0, gt=0)
    equilibration_ps: float = Field(ge=0)
    production_ps: float = Field(gt=0)
    frame_interval_fs: float = Field(gt=0)
    resample_equilibration_ps: float = Field(default=1.0, ge=0)
    seed: int = 0
    max_temperature_factor: float = Field(default=3.0, gt=1)
    # constant pressure (stochastic cell rescaling) when pressure_bar is given
    pressure_bar: float | None = None
    barostat_coupling: Literal["isotropic", "semi_isotropic", "anisotropic", "uniaxial_z"] = "isotropic"
    barostat_time_fs: float = Field(default=1000.0, gt=0)
    compressibility_per_bar: float = Field(default=4.5e-5, gt=0)
    barostat_interval_steps: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _frames(self) -> "SamplingConfig":
        if self.pressure_bar is not None and self.integrator == "velocity_verlet":
            raise ValueError("pressure_bar needs a thermostat: integrator baoab or nose_hoover_chain")
        if self.frame_interval_fs < self.timestep_fs:
            raise ValueError("frame_interval_fs must be at least timestep_fs")
        if self.production_ps * 1000.0 < self.frame_interval_fs:
            raise ValueError("production_ps is shorter than one frame interval")
        return self


# ------------------------------------------------------------------- targets
class _ObservableConfig(_Strict):
    """An observable: builds itself; a curve names the unit of its grid, a scalar the unit of its value."""

    #: unit suffix of a curve's grid (A, inv_A, deg, rad), None for a scalar
    grid_unit: ClassVar[str | None] = "A"
    #: unit suffix of a scalar's value_*/sigma_* keys, None for a curve
    scalar_unit: ClassVar[str | None] = None

    def build(self, temperature_K: float) -> Observable:
        raise NotImplementedError


class _RadialBins(_ObservableConfig):
    """The r bins of a pair-distance curve (Å)."""

    r_max_A: float = Field(gt=0)
    r_min_A: float = Field(default=0.0, ge=0)
    bin_width_A: float = Field(default=0.05, gt=0)
    smoothing_A: float | None = Field(default=None, ge=0)


class RdfConfig(_RadialBins):
    kind: Literal["rdf"]
    species: tuple[Element, Element] | None = None

    def build(self, temperature_K: float) -> Observable:
        return RadialDistribution(r_max_A=self.r_max_A, r_min_A=self.r_min_A, bin_width_A=self.bin_width_A,
                                  smoothing_A=self.smoothing_A, species=self.species)


class PressureConfig(_ObservableConfig):
    kind: Literal["pressure"]
    grid_unit: ClassVar[str | None] = None
    scalar_unit: ClassVar[str | None] = "bar"

    def build(self, temperature_K: float) -> Observable:
        return Pressure(temperature_K=temperature_K)


class DensityConfig(_ObservableConfig):
    """Mass density in g/cm³ (varies only in NPT sampling)."""

    kind: Literal["density"]
    grid_unit: ClassVar[str | None] = None
    scalar_unit: ClassVar[str | None] = "g_per_cm3"

    def build(self, temperature_K: float) -> Observable:
        return Density("mass")


class TotalRdfConfig(_RadialBins):
    """Faber–Ziman-weighted total g(r) (neutron: coherent lengths; X-ray: f0 at Q = 0)."""

    kind: Literal["total_rdf"]
    radiation: Literal["neutron", "xray"] = "neutron"

    def build(self, temperature_K: float) -> Observable:
        return TotalRDF(r_max_A=self.r_max_A, bin_width_A=self.bin_width_A, r_min_A=self.r_min_A,
                        smoothing_A=self.smoothing_A, radiation=self.radiation)


class PdfConfig(_ObservableConfig):
    """Reduced pair distribution function G(r) = 4πρ₀r[g(r) − 1] in Å⁻², optionally through the data's Q range."""

    kind: Literal["pdf"]
    radiation: Literal["neutron", "xray"] = "neutron"
    r_max_A: float = Field(gt=0)
    bin_width_A: float = Field(default=0.05, gt=0)
    smoothing_A: float | None = Field(default=None, ge=0)
    q_max_inv_A: float | None = Field(default=None, gt=0)
    lorch: bool = False
    q_damping_A: float = Field(default=0.0, ge=0)

    def build(self, temperature_K: float) -> Observable:
        return PairDistributionFunction(r_max_A=self.r_max_A, bin_width_A=self.bin_width_A,
                                        smoothing_A=self.smoothing_A, radiation=self.radiation,
                                        q_max_inv_A=self.q_max_inv_A, lorch=self.lorch, q_damping_A=self.q_damping_A)


class StructureFactorConfig(_ObservableConfig):
    """S(Q) (or F(Q) = Q[S − 1]) on the grid q_min…q_max in steps of q_step (Å⁻¹).

    ``direct``: from the cell's commensurate q vectors (exact at low Q; bins must hold a
    vector, so q_step ≳ 2π/L); otherwise by Fourier transform of g(r) up to ``r_max_A``.
    """

    kind: Literal["structure_factor"]
    grid_unit: ClassVar[str | None] = "inv_A"
    radiation: Literal["neutron", "xray"] = "neutron"
    quantity: Literal["S", "F"] = "S"
    direct: bool = False
    q_min_inv_A: float = Field(gt=0)
    q_max_inv_A: float = Field(gt=0)
    q_step_inv_A: float = Field(gt=0)
    r_max_A: float | None = Field(default=None, gt=0)
    bin_width_A: float = Field(default=0.01, gt=0)
    smoothing_A: float | None = Field(default=None, ge=0)
    r_window: Literal["lorch"] | None = None

    @model_validator(mode="after")
    def _grid(self) -> "StructureFactorConfig":
        if self.q_max_inv_A <= self.q_min_inv_A:
            raise ValueError("q_max_inv_A must exceed q_min_inv_A")
        if not self.direct and self.r_max_A is None:
            raise ValueError("the Fourier route (direct: false) needs r_max_A")
        return self

    def build(self, temperature_K: float) -> Observable:
        n = int(math.floor((self.q_max_inv_A - self.q_min_inv_A) / self.q_step_inv_A + 1e-9)) + 1
        q = self.q_min_inv_A + self.q_step_inv_A * torch.arange(n, dtype=torch.float64)
        return StructureFactor(q, radiation=self.radiation, quantity=self.quantity, direct=self.direct,
                               r_max_A=self.r_max_A, bin_width_A=None if self.direct else self.bin_width_A,
                               smoothing_A=self.smoothing_A, r_window=self.r_window)


class AdfConfig(_ObservableConfig):
    """Bond-angle distribution of triplets species[0]–species[1]–species[2] (centre in the middle)."""

    kind: Literal["adf"]
    species: tuple[Element, Element, Element]
    r_max_A: float = Field(gt=0)
    r_min_A: float = Field(default=0.0, ge=0)
    n_bins: int = Field(default=180, ge=2)
    smoothing_deg: float | None = Field(default=None, ge=0)
    angle_unit: Literal["degree", "radian"] = "degree"

    @property
    def unit_of_grid(self) -> str:
        return "deg" if self.angle_unit == "degree" else "rad"

    def build(self, temperature_K: float) -> Observable:
        return AngularDistribution(species=self.species, r_max_A=self.r_max_A, r_min_A=self.r_min_A,
                                   n_bins=self.n_bins, smoothing_deg=self.smoothing_deg, angle_unit=self.angle_unit)


CurveConfig = Annotated[
    Union[RdfConfig, TotalRdfConfig, PdfConfig, StructureFactorConfig, AdfConfig], Field(discriminator="kind")
]


class PeakPositionConfig(_ObservableConfig):
    """Position of the peak of a curve observable inside ``window`` (in that curve's grid unit)."""

    kind: Literal["peak_position"]
    grid_unit: ClassVar[str | None] = None
    of: CurveConfig
    window: tuple[float, float]

    @model_validator(mode="after")
    def _window(self) -> "PeakPositionConfig":
        if self.window[1] <= self.window[0]:
            raise ValueError("window must be [low, high] with low < high")
        return self

    def build(self, temperature_K: float) -> Observable:
        return PeakPosition(self.of.build(temperature_K), self.window)


class InterlayerSpacingConfig(_ObservableConfig):
    """Cell height along ``axis`` (0, 1, 2 = a, b, c) over the number of layers, Å (NPT)."""

    kind: Literal["interlayer_spacing"]
    grid_unit: ClassVar[str | None] = None
    scalar_unit: ClassVar[str | None] = "A"
    n_layers: int = Field(ge=1)
    axis: int = Field(default=2, ge=0, le=2)

    def build(self, temperature_K: float) -> Observable:
        return InterlayerSpacing(self.n_layers, self.axis)


class LatticeParameterConfig(_ObservableConfig):
    """Mean length (Å) of cell vector a, b or c over ``repeats`` unit cells, or a cell angle (degrees), NPT."""

    kind: Literal["lattice_parameter"]
    grid_unit: ClassVar[str | None] = None
    parameter: Literal["a", "b", "c", "alpha", "beta", "gamma"]
    repeats: int = Field(default=1, ge=1)

    @property
    def unit_of_value(self) -> str:
        return "A" if self.parameter in ("a", "b", "c") else "deg"

    def build(self, temperature_K: float) -> Observable:
        return LatticeParameter(self.parameter, self.repeats)


class ElasticConstantConfig(_ObservableConfig):
    """Isothermal elastic constant C_ij (Voigt, GPa) from NVT stress fluctuations.

    ``component``: C11 … C66; ``cubic_average``: average over the cubic equivalents (C11/C22/C33,
    C12/C13/C23, C44/C55/C66) of the same frames.
    """

    kind: Literal["elastic_constant"]
    grid_unit: ClassVar[str | None] = None
    scalar_unit: ClassVar[str | None] = "GPa"
    component: str = Field(pattern=r"^C[1-6][1-6]$")
    cubic_average: bool = False

    def build(self, temperature_K: float) -> Observable:
        return ElasticConstant(self.component, temperature_K, cubic_average=self.cubic_average)


class BulkModulusConfig(_ObservableConfig):
    """Isothermal bulk modulus (GPa) from NPT volume fluctuations (isotropic or anisotropic barostat)."""

    kind: Literal["bulk_modulus"]
    grid_unit: ClassVar[str | None] = None
    scalar_unit: ClassVar[str | None] = "GPa"

    def build(self, temperature_K: float) -> Observable:
        return BulkModulus(temperature_K)


class HeatCapacityConfig(_ObservableConfig):
    """Classical heat capacity from energy fluctuations plus the analytic kinetic part (3/2) N k_B.

    Without ``pressure_bar``: C_V from NVT frames; with it: C_P from NPT frames sampled at that
    pressure. ``per``: ``mole`` (J/(mol K), per mole of atoms: value_J_per_mol_K) or ``gram``
    (J/(g K): value_J_per_g_K).
    """

    kind: Literal["heat_capacity"]
    grid_unit: ClassVar[str | None] = None
    per: Literal["mole", "gram"] = "mole"
    pressure_bar: float | None = None

    @property
    def unit_of_value(self) -> str:
        return "J_per_mol_K" if self.per == "mole" else "J_per_g_K"

    def build(self, temperature_K: float) -> Observable:
        return HeatCapacity(temperature_K, per=self.per, pressure_bar=self.pressure_bar)


#: every kind of observable a target may name (the registry: a new kind is an _ObservableConfig added here)
ObservableConfig = Annotated[
    Union[RdfConfig, PressureConfig, DensityConfig, TotalRdfConfig, PdfConfig, StructureFactorConfig, AdfConfig,
          PeakPositionConfig, InterlayerSpacingConfig, LatticeParameterConfig, ElasticConstantConfig,
          BulkModulusConfig, HeatCapacityConfig],
    Field(discriminator="kind"),
]


def _grid_unit(obs: _ObservableConfig) -> str:
    """The unit suffix of a curve observable's grid: A, inv_A, deg or rad."""
    if isinstance(obs, AdfConfig):
        return obs.unit_of_grid
    assert obs.grid_unit is not None, f"{type(obs).__name__} is not a curve"
    return obs.grid_unit


def _scalar_unit(obs: _ObservableConfig) -> str | None:
    """The unit suffix of a scalar target's value_*/sigma_* keys, or None for a curve."""
    if isinstance(obs, PeakPositionConfig):
        return _grid_unit(obs.of)
    if isinstance(obs, (LatticeParameterConfig, HeatCapacityConfig)):
        return obs.unit_of_value
    return obs.scalar_unit


_X_UNITS = {"A": ("angstrom", "nm"), "inv_A": ("inverse_angstrom", "inverse_nm"), "deg": ("degree",),
            "rad": ("radian",)}
_SCALAR_UNITS = ("bar", "g_per_cm3", "A", "inv_A", "deg", "rad", "GPa", "J_per_mol_K", "J_per_g_K")



class DataConfig(_Strict):
    """A measured curve in a text/CSV file; columns by index (0-based) or header name.

    A file without a header line (e.g. a digitised curve, two space-separated columns) is read
    with ``x_column: 0, y_column: 1`` (the defaults); a header line of names allows
    ``x_column: r_angstrom``. ``tidy: true`` sorts the rows by x and averages rows that share an
    x (digitised curves often repeat or step back); without it such a file is refused.

    Optional metadata of the measurement, checked against the simulated system before a
    run: ``composition`` (element → amount, any normalisation, e.g. {C: 3, N: 4}) and
    ``number_density_per_A3`` (atoms per Å³; NVT cells must match it within 2 %).
    """

    file: Path
    x_column: int | str = 0
    y_column: int | str = 1
    sigma_column: int | str | None = None
    x_unit: Literal["angstrom", "nm", "inverse_angstrom", "inverse_nm", "degree", "radian"] = "angstrom"
    composition: dict[Element, float] | None = None
    number_density_per_A3: float | None = Field(default=None, gt=0)
    tidy: bool = False


#: the keys of a target that carry a unit suffix, and the suffixes they take
_UNIT_KEYS = {"fit_range": ("A", "inv_A", "deg", "rad"), "value": _SCALAR_UNITS, "sigma": _SCALAR_UNITS}


class TargetConfig(_Strict):
    """One target.

    Curves take ``data`` and a fit range in the unit of their grid: ``fit_range_A`` (g(r),
    G(r)), ``fit_range_inv_A`` (S(Q), F(Q)) or ``fit_range_deg``/``fit_range_rad`` (angles).
    Scalars take a value and optionally its σ with the observable's unit: ``value_bar``
    (pressure), ``value_g_per_cm3`` (density), ``value_A`` (interlayer spacing, a peak in
    r, a lattice length), ``value_inv_A`` (a peak in Q), ``value_deg``/``value_rad`` (a peak in
    angle, ``value_deg`` a lattice angle), ``value_GPa`` (elastic constant, bulk modulus),
    ``value_J_per_mol_K``/``value_J_per_g_K`` (heat capacity).

    The unit-suffixed keys are read into ``fit_range``, ``value`` and ``sigma`` (in the unit of
    the observable, which must be the unit of the key) and written back with their suffix.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9_\-]+$")
    observable: ObservableConfig
    data: DataConfig | None = None
    fit_range: tuple[float, float] | None = None
    value: float | None = None
    sigma: float | None = Field(default=None, gt=0)
    weight: float = Field(default=1.0, ge=0)
    #: the key each of fit_range, value, sigma was given with (e.g. {"value": "value_bar"})
    given_as: dict[str, str] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _from_unit_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for base, units in _UNIT_KEYS.items():
            for key in [f"{base}_{u}" for u in units]:  # a resolved config of an earlier version lists them all
                if key in data and data[key] is None:
                    del data[key]
            if base in data:
                raise ValueError(f"give {base} with its unit: one of {', '.join(f'{base}_{u}' for u in units)}")
            given = [f"{base}_{u}" for u in units if f"{base}_{u}" in data]
            if len(given) > 1:
                raise ValueError(f"give one of {', '.join(given)}, not several")
            if given:
                data[base] = data.pop(given[0])
                data.setdefault("given_as", {})[base] = given[0]
        return data

    @model_serializer(mode="wrap")
    def _to_unit_keys(self, handler: Any) -> dict[str, Any]:
        out = handler(self)
        for base in _UNIT_KEYS:
            value = out.pop(base, None)
            if value is not None:
                out[self.given_as.get(base) or f"{base}_{self._unit_for(base)}"] = value
        return out

    def _unit_for(self, base: str) -> str:
        unit = _scalar_unit(self.observable)
        return unit if unit is not None and base != "fit_range" else _grid_unit(self.observable)

    @property
    def scalar_value(self) -> tuple[float, float | None] | None:
        """(value, sigma) of a scalar target in the observable's unit, or None for a curve."""
        if _scalar_unit(self.observable) is None:
            return None
        assert self.value is not None
        return self.value, self.sigma

    @model_validator(mode="after")
    def _consistent(self) -> "TargetConfig":
        obs = self.observable
        kind = getattr(obs, "kind")
        unit = _scalar_unit(obs)
        given = self.given_as
        if unit is not None:
            key = f"value_{unit}"
            if self.value is None:
                raise ValueError(f"a {kind} target needs {key}")
            wrong = [k for b, k in given.items() if b != "fit_range" and k != f"{b}_{unit}"]
            if wrong or self.data is not None or self.fit_range is not None:
                named = wrong + (["data"] if self.data is not None else []) + \
                    ([given["fit_range"]] if self.fit_range is not None else [])
                raise ValueError(f"a {kind} target takes {key} (and sigma_{unit}) only, not {', '.join(sorted(named))}")
            return self
        if self.data is None:
            raise ValueError(f"a {kind} target needs data")
        scalars = sorted(k for b, k in given.items() if b != "fit_range")
        if scalars:
            raise ValueError(f"{', '.join(scalars)}: value_*/sigma_* keys are for scalar targets")
        grid = _grid_unit(obs)
        range_key = f"fit_range_{grid}"
        if self.fit_range is not None and given.get("fit_range") != range_key:
            raise ValueError(f"a {kind} target takes {range_key}, not {given.get('fit_range')}")
        if self.data.x_unit not in _X_UNITS[grid]:
            raise ValueError(f"data.x_unit {self.data.x_unit!r} does not fit a {kind} target; "
                             f"use one of {_X_UNITS[grid]}")
        if self.fit_range is not None and self.fit_range[1] <= self.fit_range[0]:
            raise ValueError(f"{range_key} must be [low, high] with low < high")
        return self


# -------------------------------------------------------------------- refine
class RefineConfig(_Strict):
    n_updates: int = Field(default=50, ge=0)
    learning_rate: float = Field(default=0.01, gt=0)
    learning_rate_decay: float = Field(default=1.0, gt=0, le=1)
    ess_threshold: float = Field(default=0.9, gt=0, le=1)
    chunk_size: int = Field(default=32, ge=1)
    max_rollbacks: int = Field(default=5, ge=0)
    final_check: bool = True
    optimizer: Literal["adam", "gauss_newton"] = "adam"
    #: Adam's (β₁, β₂), the decay rates of the first and second moments; a smaller β₁ (e.g. 0.5)
    #: stops the momentum from carrying a target that one step can reach (a spacing) past its value
    #: (a resumed run keeps the betas of its checkpoint, as it keeps the optimizer's state)
    adam_betas: tuple[float, float] = (0.9, 0.999)

    _renamed: ClassVar[dict[str, str]] = {"adam_beta1": "adam_betas", "adam_beta2": "adam_betas"}

    @field_validator("adam_betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"adam_betas must lie in [0, 1), got {list(v)}")
        return v
    max_step_kT: float = Field(default=2.0, gt=0)
    initial_damping: float = Field(default=1e-2, ge=0)
    #: run each MD sampling in resumable segments of this many ps (a stopped run resumes inside it)
    segment_ps: float | None = Field(default=None, gt=0)


class DftTrainConfig(_Strict):
    """``exprefine train``: fitting the potential to the DFT labels alone."""

    epochs: int = Field(default=100, ge=0)
    learning_rate: float = Field(default=1e-3, gt=0)
    lr_schedule: Literal["constant", "exponential", "plateau"] = "plateau"
    lr_factor: float = Field(default=0.5, gt=0, le=1)
    patience: int = Field(default=10, ge=0)
    early_stopping_patience: int | None = Field(default=None, ge=1)
    max_grad_norm: float | None = Field(default=None, gt=0)
    seed: int = 0


class DftConfig(_Strict):
    """Labelled reference frames (DFT or any method): for ``exprefine train`` and for fused refinement.

    ``file``: an extxyz file (``.gz`` too) or a DeePMD npy/raw folder, a glob pattern
    (``dataset/seed/*.extxyz.gz``) or a list of them, read in sorted order. The frames are split
    once into train/validation/test (``split_fractions``, ``split_seed``; the indices are saved
    in ``run_dir/dft_split.json``): at random, or with ``split_key`` (an ``atoms.info`` key
    holding a unique name per frame, e.g. ``frame_key``) by a hash of that name, which gives
    every frame the subset it has in any other split with the same fractions and seed (the
    split of a data set made by ``exprefine.data.split_by_key``: its test frames stay unseen).
    During refinement λ = ``fused_weight`` times the energy + force (+ stress) loss of a random
    batch of training frames is added to the experimental loss at every update (Röcken &
    Zavadlav 2024), and the errors on the test frames are reported before and after.
    """

    file: Path | list[Path]
    format: Literal["auto", "extxyz", "deepmd"] = "auto"
    energy_key: str = "energy"
    forces_key: str = "forces"
    stress_key: str = "stress"
    virial_key: str | None = None
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    split_key: str | None = None
    energy_weight: float = Field(default=1.0, ge=0)
    force_weight: float = Field(default=1.0, ge=0)
    stress_weight: float = Field(default=0.0, ge=0)
    batch_size: int = Field(default=4, ge=1)
    eval_batch_size: int = Field(default=16, ge=1)
    fused_weight: float = Field(default=0.0, ge=0)
    train: DftTrainConfig = Field(default_factory=DftTrainConfig)

    @model_validator(mode="after")
    def _fractions(self) -> "DftConfig":
        if abs(sum(self.split_fractions) - 1.0) > 1e-9 or min(self.split_fractions) < 0:
            raise ValueError(f"split_fractions must be ≥ 0 and sum to 1, got {list(self.split_fractions)}")
        return self


#: a state point's name: letters, digits, ``_``, ``-``, ``.`` (it names a folder of the run directory)
_STATE_POINT_NAME = r"^[A-Za-z0-9_.-]+$"
#: the name of the one state point of a config with ``system:`` (no folder of its own)
SINGLE_STATE_POINT = "system"


def _unique_target_names(targets: list[TargetConfig], where: str) -> None:
    names = [t.name for t in targets]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise ValueError(f"{where}target names must be unique; repeated: {sorted(dup)}")


class StatePointConfig(SystemConfig):
    """One state point of a refinement over several (``systems:``): its own structure, its own
    targets, and the keys of the shared ``sampling`` section it changes (``temperature_K``,
    ``pressure_bar``, ``timestep_fs``, ``production_ps``, ``seed``, ...).

    ``weight`` multiplies the weights of its targets in the total loss.
    """

    name: str = Field(pattern=_STATE_POINT_NAME)
    sampling: dict[str, Any] = Field(default_factory=dict)
    targets: list[TargetConfig] = Field(default_factory=list)
    weight: float = Field(default=1.0, gt=0)

    @field_validator("sampling")
    @classmethod
    def _known_sampling_keys(cls, v: dict[str, Any]) -> dict[str, Any]:
        known = list(SamplingConfig.model_fields)
        for key in v:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
                raise ValueError(f"unknown sampling key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        return v

    @model_validator(mode="after")
    def _has_targets(self) -> "StatePointConfig":
        if not self.targets:
            raise ValueError(f"state point {self.name!r} has no targets")
        _unique_target_names(self.targets, f"state point {self.name!r}: ")
        return self


@dataclass(frozen=True)
class StatePointSpec:
    """One state point of a config, resolved: its structure, full sampling section and targets."""

    name: str
    system: SystemConfig
    sampling: SamplingConfig
    targets: list[TargetConfig]
    weight: float = 1.0


class Config(_Strict):
    """The whole run. ``run_dir`` holds resolved config, checkpoints, logs and plots.

    One state point (``system`` with top-level ``targets``) or several (``systems``, each with its
    own targets and the ``sampling`` keys it changes; the top-level ``sampling`` is the shared default).
    ``device``: where the potential, the MD and the reweighting run (``auto``: CUDA when available).
    """

    run_dir: Path
    system: SystemConfig | None = None
    systems: list[StatePointConfig] | None = None
    potential: PotentialConfig
    sampling: SamplingConfig
    targets: list[TargetConfig] = Field(default_factory=list)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    dft: DftConfig | None = None
    threads: int | None = Field(default=None, ge=1)
    device: Literal["auto", "cpu", "cuda"] = "auto"

    @model_validator(mode="after")
    def _unique_names(self) -> "Config":
        if (self.system is None) == (self.systems is None):
            raise ValueError("give exactly one of system (one state point) and systems (a list of state points)")
        _unique_target_names(self.targets, "")
        if self.systems is not None:
            if not self.systems:
                raise ValueError("systems: give at least one state point")
            if self.targets:
                raise ValueError("with systems:, each state point lists its own targets (no top-level targets)")
            names = [s.name for s in self.systems]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"state point names must be unique; repeated: {sorted(dup)}")
            if len({s.dtype for s in self.systems}) > 1:
                raise ValueError("systems: every state point needs the same dtype (one potential)")
            for s in self.systems:
                try:
                    SamplingConfig.model_validate({**self.sampling.model_dump(), **s.sampling})
                except ValidationError as exc:
                    first = exc.errors()[0]
                    raise ValueError(f"state point {s.name!r}: sampling: {first['msg'].removeprefix('Value error, ')}")
        return self

    def state_points(self) -> list[StatePointSpec]:
        """The state points: one named ``system`` for a config with ``system:``, else those of ``systems:``."""
        if self.systems is None:
            assert self.system is not None
            return [StatePointSpec(SINGLE_STATE_POINT, self.system, self.sampling, list(self.targets))]
        return [StatePointSpec(s.name, s, SamplingConfig.model_validate({**self.sampling.model_dump(), **s.sampling}),
                               list(s.targets), s.weight) for s in self.systems]

    @property
    def dtype(self) -> str:
        """The floating dtype of the MD and the potential (``float32``/``float64``); reweighting is float64."""
        return self.state_points()[0].system.dtype


# ------------------------------------------------------------------ loading
def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides (values parsed as YAML; list items by index: ``targets.0.weight=2``)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        node: Any = raw
        for depth, part in enumerate(parts[:-1]):
            node = _child(node, part, ".".join(parts[: depth + 1]))
        last = parts[-1]
        value = yaml.safe_load(text)
        if isinstance(node, list):
            index = _index(node, last, key)
            node[index] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} is not a section")
    return raw


def _child(node: Any, part: str, where: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, where)]
    if isinstance(node, dict):
        if part not in node or node[part] is None:
            node[part] = {}
        return node[part]
    raise ConfigError(f"--set: {where} is not a section")


def _index(node: list, part: str, where: str) -> int:
    try:
        index = int(part)
    except ValueError:
        raise ConfigError(f"--set {where}: expected a list index, got {part!r}") from None
    if not -len(node) <= index < len(node):
        raise ConfigError(f"--set {where}: index {index} out of range (list has {len(node)} items)")
    return index


def _map_paths(model: BaseModel, fn: Any) -> Any:
    """``fn`` applied to every path in ``model`` (fields holding a Path or a list of them, in any
    sub-section); the model is changed in place and returned."""

    def walk(value: Any) -> Any:
        if isinstance(value, Path):
            return fn(value)
        if isinstance(value, BaseModel):
            return _map_paths(value, fn)
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    for name in type(model).model_fields:
        value = getattr(model, name)
        mapped = walk(value)
        if mapped is not value:
            setattr(model, name, mapped)
    return model


def _resolve_paths(model: BaseModel, base: Path) -> Any:
    """Every path in ``model`` made absolute against ``base`` (in place)."""

    def absolute(p: Path) -> Path:
        p = p.expanduser()
        return p if p.is_absolute() else (base / p).resolve()

    return _map_paths(model, absolute)


def _strict_models(cls: type[BaseModel] = _Strict) -> Iterator[type[BaseModel]]:
    """Every config section class (the subclasses of _Strict, recursively)."""
    for sub in cls.__subclasses__():
        yield sub
        yield from _strict_models(sub)


def known_keys() -> set[str]:
    """Every key any config section accepts (unit-suffixed target keys included), for "did you mean"."""
    keys = {name for model in _strict_models() for name in model.model_fields}
    keys |= {f"{base}_{u}" for base, units in _UNIT_KEYS.items() for u in units}
    return keys - {"given_as"}


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_validation_error(source: str, exc: ValidationError) -> str:
    """One line per problem: ``file: section.key: message (got value)``.

    An unknown key next to a missing one that it resembles (a typo) is one line:
    ``unknown key 'temprature_K' (did you mean 'temperature_K'?)``.
    """
    errors = exc.errors()

    def where(err: Any) -> tuple[str, ...]:
        return tuple(str(p) for p in err["loc"] if not str(p).startswith("function-after"))

    missing: dict[tuple[str, ...], list[str]] = {where(e)[:-1]: [] for e in errors if e["type"] == "missing"}
    for e in errors:
        if e["type"] == "missing":
            missing[where(e)[:-1]].append(where(e)[-1])
    everything = sorted(known_keys())
    explained: set[tuple[str, ...]] = set()
    lines = []
    for err in errors:
        loc = where(err)
        if err["type"] == "missing":
            continue
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            parent, key = loc[:-1], loc[-1]
            close = difflib.get_close_matches(key, missing.get(parent, []), n=1, cutoff=0.6)
            if close:
                explained.add(parent + (close[0],))
            else:
                close = difflib.get_close_matches(key, everything, n=1, cutoff=0.75)
            msg = f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif not isinstance(err.get("input"), dict) and "input" in err and "unknown element" not in msg:
            msg += f" (got {_short(err['input'])})"
        lines.append(f"{source}: {'.'.join(loc)}: {msg}")
    for parent, keys in missing.items():
        for key in keys:
            if parent + (key,) not in explained:
                lines.append(f"{source}: {'.'.join(parent + (key,))}: required key missing")
    return "\n".join(lines)


def parse_config(raw: dict[str, Any], source: str = "config", base: Path | None = None) -> Config:
    """Validate a plain dict; relative paths are resolved against ``base`` (default: cwd)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
    return _resolve_paths(cfg, base or Path.cwd())


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a YAML config file."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}".replace("\n", " ")) from None
    raw = apply_overrides(raw or {}, list(overrides or []))
    return parse_config(raw, source=str(path), base=path.resolve().parent)


def config_to_plain(cfg: Config) -> dict[str, Any]:
    """The resolved config as plain YAML-able data (paths as strings)."""
    return cfg.model_dump(mode="json")


def config_relative_to(cfg: Config, folder: str | Path) -> dict[str, Any]:
    """The resolved config as plain data with its paths relative to ``folder`` (what files written
    there record: no machine's absolute paths)."""
    base = Path(folder).resolve()
    relative = _map_paths(cfg.model_copy(deep=True), lambda p: Path(os.path.relpath(p, base)) if p.is_absolute() else p)
    return config_to_plain(relative)


def save_resolved(cfg: Config, path: str | Path) -> None:
    """The resolved config (defaults filled in) as YAML at ``path``, its paths relative to the file's
    folder: it loads again from there, and records no machine's absolute paths."""
    folder = Path(path).resolve().parent
    folder.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(config_relative_to(cfg, folder), sort_keys=False))
