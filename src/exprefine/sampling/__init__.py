"""Sampling: batched MD integrators and the sampler that produces reweighting trajectories."""

from .barostat import BarostatSettings, c_rescale_step
from .cache import CachedRun, adopt_cached_run, sample_or_load, settings_from_times
from .integrators import (
    MDState,
    NoseHooverChainState,
    baoab_step,
    conserved_energy_eV,
    degrees_of_freedom,
    init_nose_hoover_chain,
    initialize,
    initialize_velocities,
    kinetic_energy_eV,
    nose_hoover_chain_step,
    temperature_K,
    velocity_verlet_step,
)
from .sampler import SampleResult, SamplerSettings, SimulationBlowUp, check_blow_up, sample
from .segments import SegmentedRun, SegmentRecord, run_key, sample_in_segments, segment_steps_of

__all__ = [
    "BarostatSettings",
    "CachedRun",
    "c_rescale_step",
    "MDState",
    "NoseHooverChainState",
    "SampleResult",
    "SegmentRecord",
    "SegmentedRun",
    "SamplerSettings",
    "SimulationBlowUp",
    "baoab_step",
    "check_blow_up",
    "conserved_energy_eV",
    "degrees_of_freedom",
    "init_nose_hoover_chain",
    "initialize",
    "initialize_velocities",
    "kinetic_energy_eV",
    "nose_hoover_chain_step",
    "sample",
    "run_key",
    "sample_in_segments",
    "segment_steps_of",
    "adopt_cached_run",
    "sample_or_load",
    "settings_from_times",
    "temperature_K",
    "velocity_verlet_step",
]
