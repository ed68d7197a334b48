"""Closed loop on crystalline silicon: recover perturbed Stillinger–Weber parameters from the
generator's own C11, C12, C44 (NVT stress fluctuations) and lattice constant (NPT) at 300 K.

The generator is Stillinger–Weber silicon. Its "measurements": the mean lattice constant of an
NPT run at 1 bar, and C11, C12, C44 (cubic averages) of an NVT run in the cubic cell of that
lattice constant; σ of each is its block-averaging standard error. The model starts from the
pair strength ε and the repulsion B perturbed (×1.06, ×1.03) and is refined with damped
Gauss–Newton steps: each iteration samples NPT (lattice constant) and NVT at the target lattice
constant (C_ij at the measured volume), linearises both by reweighting and takes two stacked
steps on those frames. The three-body term stays at the generator's values.

    python examples/silicon/closed_loop.py            # 4 × 64 atoms, 10-ps runs, 3 rounds (not yet run)
    python examples/silicon/closed_loop.py --smoke    # 64 atoms, 0.6-ps runs (CI: runs, not converged)

Prints a table of targets before/after and the parameters; writes ``results/closed_loop.json``
(not with --smoke unless --out is given).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from ase.build import bulk

from exprefine.blocking import block_standard_error
from exprefine.observables import ElasticConstant, LatticeParameter, Observable
from exprefine.potentials import SumPotential, stillinger_weber_silicon
from exprefine.refine.gauss_newton import StackedModel, apply_step, gauss_newton_step, linearize
from exprefine.refine.targets import Target
from exprefine.sampling import BarostatSettings, SamplerSettings, sample
from exprefine.state import State, from_atoms, replicate
from exprefine.trajectory import Trajectory

TEMPERATURE_K = 300.0
PRESSURE_bar = 1.0
#: ε and B of the start, relative to the generator
PERTURBATION = {"epsilon": 1.06, "B": 1.03}


@dataclass
class RunSize:
    """How long each sampling is: cubic cells per edge, replicas, production steps, iterations."""

    repeats: int
    replicas: int
    equilibration_steps: int
    production_steps: int
    stride_steps: int
    iterations: int


SMOKE = RunSize(repeats=2, replicas=1, equilibration_steps=100, production_steps=300, stride_steps=4, iterations=1)
FULL = RunSize(repeats=2, replicas=4, equilibration_steps=1000, production_steps=5000, stride_steps=5, iterations=3)


@dataclass
class Estimate:
    """A reweighting-free average of one observable with its block standard error."""

    name: str
    value: float
    standard_error: float
    unit: str


@dataclass
class ClosedLoopResult:
    """What the closed loop found.

    Attributes:
        targets: the generator's observables (value ± SE).
        start, final: the model's observables at the start and after the last iteration.
        parameters: name → (generator, start, final) of the refined parameters.
        wall_time_s: total wall time.
        zero_kelvin_GPa: C11, C12, C44 → (generator, start, final): relaxed-ion constants at 0 K
            (:func:`exprefine.static_elastic.relaxed_elastic_constants`), free of sampling noise.
    """

    targets: list[Estimate]
    start: list[Estimate]
    final: list[Estimate]
    parameters: dict[str, tuple[float, float, float]]
    wall_time_s: float
    zero_kelvin_GPa: dict[str, tuple[float, float, float]] = field(default_factory=dict)


def observables(repeats: int) -> tuple[list[Observable], list[Observable]]:
    """(NPT observables, NVT observables): the lattice constant, and C11, C12, C44 (cubic averages)."""
    npt: list[Observable] = [LatticeParameter("a", repeats=repeats)]
    nvt: list[Observable] = [ElasticConstant(c, TEMPERATURE_K, cubic_average=True) for c in ("C11", "C12", "C44")]
    return npt, nvt


def settings(size: RunSize, seed: int, npt: bool) -> SamplerSettings:
    barostat = BarostatSettings(pressure_bar=PRESSURE_bar, compressibility_per_bar=1e-6, time_fs=200.0,
                                interval_steps=5) if npt else None
    return SamplerSettings(temperature_K=TEMPERATURE_K, timestep_fs=2.0, friction_per_ps=5.0,
                           n_equilibration_steps=size.equilibration_steps, n_production_steps=size.production_steps,
                           stride_steps=size.stride_steps, seed=seed, barostat=barostat)


def crystal(lattice_A: float, size: RunSize) -> State:
    return replicate(from_atoms(bulk("Si", "diamond", a=lattice_A, cubic=True).repeat(size.repeats)), size.replicas)


def estimate(obs: Observable, trajectory: Trajectory, potential: SumPotential) -> Estimate:
    values = obs.evaluate(trajectory, potential)
    n = values.shape[0]
    value = float(obs.reduce(values, torch.full((n,), 1.0 / n, dtype=torch.float64)))
    return Estimate(obs.name, value, float(block_standard_error(values, 10, obs.reduce)), obs.unit)


def sample_both(potential: SumPotential, lattice_A: float, size: RunSize, seed: int) -> tuple[Trajectory, Trajectory]:
    """NPT frames (for the lattice constant) and NVT frames in the cell of ``lattice_A`` (for C_ij)."""
    npt = sample(potential, crystal(lattice_A, size), settings(size, seed, npt=True)).trajectory
    nvt = sample(potential, crystal(lattice_A, size), settings(size, seed + 1, npt=False)).trajectory
    return npt, nvt


def parameters(potential: SumPotential) -> dict[str, float]:
    pair = potential.term_list()[0]
    return {"epsilon_eV": float(pair.log_epsilon.detach().exp()), "B": float(pair.log_B.detach().exp())}


def stacked_model(model: SumPotential, npt: Trajectory, nvt: Trajectory, npt_targets: list[Target],
                  nvt_targets: list[Target]) -> StackedModel:
    """Both ensembles linearised by reweighting, as one least-squares problem."""
    a = linearize(model, npt, npt_targets, [None] * len(npt_targets))
    b = linearize(model, nvt, nvt_targets, [None] * len(nvt_targets))
    return StackedModel(predictions=a.predictions + b.predictions, jacobians=a.jacobians + b.jacobians,
                        energy_covariances=[a.energy_covariance(), b.energy_covariance()],
                        point_losses=[a.loss, b.loss], ess_fractions=[a.ess_fraction, b.ess_fraction],
                        n_frames=[npt.n_frames, nvt.n_frames])


def run(size: RunSize, seed: int = 0, log: bool = True) -> ClosedLoopResult:
    """Generator runs, then ``size.iterations`` rounds of sampling plus two Gauss–Newton steps by
    reweighting, then a last sampling at the refined parameters for the report."""
    t0 = time.perf_counter()
    npt_obs, nvt_obs = observables(size.repeats)
    generator = stillinger_weber_silicon(trainable_pair=False, trainable_three_body=False)
    npt = sample(generator, crystal(5.431, size), settings(size, seed, npt=True)).trajectory
    lattice = estimate(npt_obs[0], npt, generator)
    nvt = sample(generator, crystal(lattice.value, size), settings(size, seed + 1, npt=False)).trajectory
    targets = [lattice] + [estimate(o, nvt, generator) for o in nvt_obs]
    npt_targets = [Target(name=t.name, observable=o, reference=torch.tensor(t.value), sigma=torch.tensor(t.standard_error))
                   for t, o in zip(targets[:1], npt_obs)]
    nvt_targets = [Target(name=t.name, observable=o, reference=torch.tensor(t.value), sigma=torch.tensor(t.standard_error))
                   for t, o in zip(targets[1:], nvt_obs)]

    model = stillinger_weber_silicon(epsilon_scale=PERTURBATION["epsilon"], B_scale=PERTURBATION["B"],
                                     trainable_pair=True, trainable_three_body=False)
    start_parameters = parameters(model)
    start: list[Estimate] = []
    current: list[Estimate] = []
    for iteration in range(size.iterations + 1):
        npt, nvt = sample_both(model, lattice.value, size, seed + 100 * (iteration + 1))
        current = [estimate(npt_obs[0], npt, model)] + [estimate(o, nvt, model) for o in nvt_obs]
        if iteration == 0:
            start = current
        if log:
            print(f"iteration {iteration}: " + ", ".join(f"{e.name} {e.value:.4f}" for e in current)
                  + f" | {parameters(model)}", flush=True)
        if iteration == size.iterations:
            break
        for _ in range(2):
            stacked = stacked_model(model, npt, nvt, npt_targets, nvt_targets)
            step, _ = gauss_newton_step(npt_targets + nvt_targets, stacked, damping=1e-3, max_step_kT=3.0)
            apply_step(model, step)
    final_parameters = parameters(model)
    truth = parameters(generator)
    start_model = stillinger_weber_silicon(epsilon_scale=PERTURBATION["epsilon"], B_scale=PERTURBATION["B"])
    zero_k = [zero_kelvin_constants(m) for m in (generator, start_model, model)]
    return ClosedLoopResult(
        targets=targets, start=start, final=current,
        parameters={k: (truth[k], start_parameters[k], final_parameters[k]) for k in truth},
        wall_time_s=time.perf_counter() - t0,
        zero_kelvin_GPa={name: (zero_k[0][name], zero_k[1][name], zero_k[2][name]) for name in zero_k[0]},
    )


def zero_kelvin_constants(potential: SumPotential) -> dict[str, float]:
    """Relaxed-ion C11, C12, C44 (GPa) at 0 K of the diamond lattice at its SW minimum (a = 5.431 Å)."""
    from exprefine.static_elastic import relaxed_elastic_constants

    c = relaxed_elastic_constants(potential, bulk("Si", "diamond", a=5.431, cubic=True), components=(0, 3))
    return {"C11": float(c[0, 0]), "C12": float(c[1, 0]), "C44": float(c[3, 3])}


def report(result: ClosedLoopResult) -> str:
    lines = ["| observable | generator | start | refined | refined − generator |", "|---|---|---|---|---|"]
    for t, s, f in zip(result.targets, result.start, result.final):
        lines.append(f"| {t.name} ({t.unit}) | {t.value:.4f} ± {t.standard_error:.4f} | {s.value:.4f} | "
                     f"{f.value:.4f} ± {f.standard_error:.4f} | {f.value - t.value:+.4f} |")
    lines += ["", "| parameter | generator | start | refined |", "|---|---|---|---|"]
    for name, (truth, begin, end) in result.parameters.items():
        lines.append(f"| {name} | {truth:.5g} | {begin:.5g} | {end:.5g} |")
    if result.zero_kelvin_GPa:
        lines += ["", "| relaxed 0 K constant (GPa) | generator | start | refined | refined/generator − 1 |",
                  "|---|---|---|---|---|"]
        for name, (truth, begin, end) in result.zero_kelvin_GPa.items():
            lines.append(f"| {name} | {truth:.2f} | {begin:.2f} | {end:.2f} | {end / truth - 1:+.2%} |")
    lines.append(f"\nwall time {result.wall_time_s:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> ClosedLoopResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="64 atoms, 0.6-ps runs, one round (seconds)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON file of the result")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = run(SMOKE if args.smoke else FULL, seed=args.seed)
    print(report(result))
    out = args.out if args.out is not None or args.smoke else Path(__file__).parent / "results" / "closed_loop.json"
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(asdict(result), indent=2))
    assert all(math.isfinite(v) for triple in result.parameters.values() for v in triple)
    return result


if __name__ == "__main__":
    main()
