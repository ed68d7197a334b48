"""Make the g-C3N4 training set (GFN1-xTB "label" method) and the base MACE model, in resumable stages.

Stages (``--stage``, default ``all`` = the five in order):

  seed     seeded bilayer configurations (dataset_recipe.py: AB/AA', d 2.9–4.0 Å, ±2 % strain,
           corrugation, layer slides, C-for-N defect pairs, thermal rattles for 100–1000 K),
           labelled with the "label" method into shards dataset/seed/seed_NNN.extxyz.gz
  train0   a preliminary MACE fitted to the seed frames          → dataset/train0/train0.model
  explore  Langevin NVT with that MACE at 100/300/600/1000 K on 2×2 bilayers (pristine and
           defected), one frame every --stride-steps steps (uniform subsampling), blow-up guard;
           frames labelled with the "label" method                → dataset/explore/<run>.extxyz.gz
  wide     seed-like bilayers with the layers pulled apart, d ~ U(4, 8) Å, labelled
           with the "label" method (the energy levelling off as the layers
           separate)                                              → dataset/wide/wide_NNN.extxyz.gz
  train    the base MACE fitted to all labelled frames with a fixed key-hash train/valid/test
           split (dataset/split.json)                             → models/base_mace.model

Every stage resumes where it stopped: labels are appended frame by frame to working caches
(dataset/cache/, not committed) and written as compressed shards when a shard is complete; an
MD run is written when it finishes; training writes a checkpoint every epoch (dataset/runs/,
not committed). Killing the script loses at most the frame, MD run or epoch in progress;
running the same command again continues. ``--max-new-labels N`` stops after N new labels,
so the labelling can be done in pieces and committed piece by piece.

    export OMP_NUM_THREADS=1
    python examples/gcn/make_dataset.py --smoke                      # every stage, tiny, ~30 s
    python examples/gcn/make_dataset.py --stage seed --max-new-labels 300
    python examples/gcn/make_dataset.py                              # the whole pipeline
    python examples/gcn/make_dataset.py --stage train --epochs 120   # train longer (resumes)

dataset/README.md is rewritten after every run with what was done, how, and how to redo it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from dataset_recipe import (
    EXPLORE_SYSTEMS,
    EXPLORE_TEMPERATURES_K,
    WIDE_INDEX_OFFSET,
    ExploreRun,
    SeedRecipe,
    explore_runs,
    explore_start,
    json_ready,
    seed_frames,
    thermal_rattle_sigma_A,
    wide_frames,
    wide_recipe,
)

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STAGES = ("seed", "train0", "explore", "wide", "train")
MANIFEST_FORMAT = "exprefine.gcn_dataset/1"
ELEMENTS = ("C", "N")


# ==================================================================================== settings
@dataclass
class ModelSettings:
    """Architecture of the MACE models (both train0 and the base model).

    Attributes:
        channels: hidden channels; max_L: their highest L (0: scalars only); max_ell: highest
        degree of the edge spherical harmonics; correlation: body order of the product basis;
        r_max_A: cutoff, Å; n_interactions: message-passing layers; dtype: training and MD dtype;
        seed: seed of the weight initialisation.
    """

    channels: int = 32
    max_L: int = 0
    max_ell: int = 2
    correlation: int = 3
    r_max_A: float = 5.5
    n_interactions: int = 2
    dtype: str = "float32"
    seed: int = 0


@dataclass
class FitSettings:
    """Training of one model: epochs, Adam, loss weights (see exprefine.training.TrainSettings).

    Loss = w_E·mean((ΔE/N)²) [eV/atom]² + w_F·mean(ΔF²) [eV/Å]² + w_S·mean(Δσ²) [eV/Å³]².
    """

    epochs: int = 60
    batch_size: int = 4
    learning_rate: float = 0.005
    energy_weight: float = 1000.0
    force_weight: float = 10.0
    stress_weight: float = 1.0e4
    patience: int = 5
    lr_factor: float = 0.5
    min_learning_rate: float = 1e-5
    max_grad_norm: float = 10.0
    seed: int = 0


@dataclass
class ExploreConfig:
    """The MD exploration (dataset_recipe.explore_runs and exprefine.data.exploration).

    Attributes:
        n_frames_total: frames wanted over all runs (runs = ceil(n / frames_per_run)).
        frames_per_run: frames stored per run.
        stride_steps: MD steps between stored frames.
        n_equilibration_steps: steps before the first stored frame.
        timestep_fs: MD step, fs.
        friction_per_ps: Langevin friction, 1/ps.
        temperatures_K: thermostat temperatures.
        n_systems: the first n of dataset_recipe.EXPLORE_SYSTEMS.
        min_distance_A, max_force_eV_per_A, max_temperature_factor, max_restarts,
        max_nearest_neighbour_A: blow-up guard (the last: every atom keeps a bonded neighbour;
        C–N bonds are 1.33–1.47 Å).
    """

    n_frames_total: int = 960
    frames_per_run: int = 40
    stride_steps: int = 20
    n_equilibration_steps: int = 200
    timestep_fs: float = 1.0
    friction_per_ps: float = 10.0
    temperatures_K: tuple[float, ...] = EXPLORE_TEMPERATURES_K
    n_systems: int = len(EXPLORE_SYSTEMS)
    min_distance_A: float = 0.9
    max_force_eV_per_A: float = 50.0
    max_temperature_factor: float = 3.0
    max_restarts: int = 2
    max_nearest_neighbour_A: float = 1.8


@dataclass
class Pipeline:
    """Everything that decides what the pipeline computes."""

    out_dir: Path
    model_path: Path
    seed: int = 0
    n_seed: int = 600
    n_wide: int = 150
    wide_spacing_range_A: tuple[float, float] = (4.0, 8.0)
    recipe: SeedRecipe = field(default_factory=SeedRecipe)
    shard_size: int = 100
    electronic_temperature_K: float = 300.0
    accuracy: float = 1.0
    explore: ExploreConfig = field(default_factory=ExploreConfig)
    model: ModelSettings = field(default_factory=ModelSettings)
    train0: FitSettings = field(default_factory=lambda: FitSettings(epochs=20))
    train: FitSettings = field(default_factory=FitSettings)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    split_seed: int = 0
    max_new_labels: int | None = None
    restart_training: bool = False
    device: str = "cpu"
    smoke: bool = False
    progress: bool = True

    def fixed(self) -> dict[str, Any]:
        """The settings that decide the frames and labels already on disk (must not change)."""
        ex = asdict(self.explore)
        ex.pop("n_frames_total")
        return json_ready({
            "seed": self.seed,
            "recipe": self.recipe.as_dict(),
            "shard_size": self.shard_size,
            "label_method": {"method": "label", "electronic_temperature_K": self.electronic_temperature_K,
                             "accuracy": self.accuracy},
            "explore": ex,
            "wide": {"spacing_range_A": self.wide_spacing_range_A, "index_offset": WIDE_INDEX_OFFSET},
        })


@dataclass
class Layout:
    """Where every output lives (see the module docstring)."""

    out_dir: Path

    @property
    def seed_dir(self) -> Path:
        return self.out_dir / "seed"

    @property
    def explore_dir(self) -> Path:
        return self.out_dir / "explore"

    @property
    def wide_dir(self) -> Path:
        return self.out_dir / "wide"

    @property
    def md_dir(self) -> Path:
        return self.explore_dir / "md"

    @property
    def cache_dir(self) -> Path:
        return self.out_dir / "cache"

    @property
    def runs_dir(self) -> Path:
        return self.out_dir / "runs"

    @property
    def train0_model(self) -> Path:
        return self.out_dir / "train0" / "train0.model"

    @property
    def split_path(self) -> Path:
        return self.out_dir / "split.json"

    @property
    def manifest_path(self) -> Path:
        return self.out_dir / "manifest.json"

    @property
    def explore_runs_path(self) -> Path:
        return self.explore_dir / "runs.json"


# ==================================================================================== manifest
def versions() -> dict[str, str]:
    """Versions of the packages that make the data, and the git commit of the code."""
    import importlib.metadata as md

    out = {"python": sys.version.split()[0]}
    for name in ("tblite", "ase", "numpy", "torch", "mace-torch", "e3nn"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                                text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "examples/gcn/make_dataset.py",
                                "examples/gcn/dataset_recipe.py"], cwd=REPO, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        out["exprefine_commit"] = commit + (" (with uncommitted changes)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        out["exprefine_commit"] = "unknown"
    return out


def load_manifest(layout: Layout) -> dict[str, Any]:
    if layout.manifest_path.exists():
        data = json.loads(layout.manifest_path.read_text())
        if data.get("format") != MANIFEST_FORMAT:
            raise ValueError(f"{layout.manifest_path} is not a {MANIFEST_FORMAT} manifest")
        return data
    return {"format": MANIFEST_FORMAT, "fixed": None, "history": [], "stages": {}}


def save_manifest(layout: Layout, manifest: dict[str, Any]) -> None:
    layout.out_dir.mkdir(parents=True, exist_ok=True)
    tmp = layout.manifest_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(json_ready(manifest), indent=1))
    tmp.replace(layout.manifest_path)


def check_fixed(manifest: dict[str, Any], pipeline: Pipeline) -> None:
    """One-line error if the settings that made the frames on disk differ from these."""
    stored = manifest.get("fixed")
    now = pipeline.fixed()
    if stored is None:
        manifest["fixed"] = now
        return
    for key in set(now) - set(stored):  # a stage added since: no frames of it on disk yet
        stored[key] = now[key]
    changed = sorted(k for k in set(stored) | set(now) if stored.get(k) != now.get(k))
    if changed:
        raise ValueError(f"{pipeline.out_dir} was made with other {', '.join(changed)} settings "
                         f"(see its manifest.json); use the same ones or another --out")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ==================================================================================== progress
class LabelProgress:
    """A progress bar over the frames a label call computes (seconds per frame in the postfix)."""

    def __init__(self, enabled: bool, description: str) -> None:
        self.enabled = enabled
        self.description = description
        self.bar = None

    def __call__(self, atoms, n_done: int, n_total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=n_total, desc=self.description, unit="frame", dynamic_ncols=True)
        self.bar.update(1)
        self.bar.set_postfix(s_per_frame=f"{atoms.info['label_wall_s']:.2f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


# ==================================================================================== stage: seed
@dataclass
class LabelReport:
    """What a labelling stage did: frames wanted, labelled, computed now, and the time per frame."""

    n_frames: int
    n_labelled: int
    n_computed: int
    complete: bool
    mean_label_s: float | None
    shards_complete: int
    n_shards: int


def seed_shards(pipeline: Pipeline) -> list[tuple[str, list]]:
    """(name, frames) of the seed stage: frames 0 … n_seed−1 in shards of shard_size."""
    shards = []
    for k, start in enumerate(range(0, pipeline.n_seed, pipeline.shard_size)):
        n = min(pipeline.shard_size, pipeline.n_seed - start)
        shards.append((f"seed_{k:03d}", seed_frames(pipeline.recipe, pipeline.seed, n, start)))
    return shards


def label_into_shards(pipeline: Pipeline, layout: Layout, shards, out_dir: Path, description: str,
                      budget: int | None):
    """Label ``shards`` with the "label" method into ``out_dir`` (working caches under cache/)."""
    from exprefine.reference import label_shards

    bar = LabelProgress(pipeline.progress, description)
    try:
        return label_shards(shards, "label", out_dir, layout.cache_dir, pipeline.electronic_temperature_K,
                            pipeline.accuracy, max_new_frames=budget, progress=bar)
    finally:
        bar.close()


def stage_seed(pipeline: Pipeline, layout: Layout, budget: int | None) -> tuple[LabelReport, list]:
    shards = seed_shards(pipeline)
    run = label_into_shards(pipeline, layout, shards, layout.seed_dir, "label seed", budget)
    return label_report(run, pipeline.n_seed), run.frames


def label_report(run, n_frames: int) -> LabelReport:
    """The LabelReport of a ``label_shards`` run of a stage that wants ``n_frames`` frames.

    The label time is the mean over every labelled frame of the stage (each frame records its
    own ``label_wall_s``), so a rerun that computes nothing still reports it.
    """
    times = [float(a.info["label_wall_s"]) for a in run.frames if "label_wall_s" in a.info]
    return LabelReport(
        n_frames=n_frames,
        n_labelled=len(run.frames),
        n_computed=run.n_computed,
        complete=run.complete,
        mean_label_s=float(np.mean(times)) if times else None,
        shards_complete=sum(s.complete for s in run.shards),
        n_shards=len(run.shards),
    )


# ==================================================================================== stage: wide
def wide_shards(pipeline: Pipeline) -> list[tuple[str, list]]:
    """(name, frames) of the wide stage: frames 0 … n_wide−1 in shards of shard_size."""
    recipe = wide_recipe(pipeline.recipe, pipeline.wide_spacing_range_A)
    shards = []
    for k, start in enumerate(range(0, pipeline.n_wide, pipeline.shard_size)):
        n = min(pipeline.shard_size, pipeline.n_wide - start)
        shards.append((f"wide_{k:03d}", wide_frames(recipe, pipeline.seed, n, start)))
    return shards


def stage_wide(pipeline: Pipeline, layout: Layout, budget: int | None) -> tuple[LabelReport, list]:
    run = label_into_shards(pipeline, layout, wide_shards(pipeline), layout.wide_dir, "label wide", budget)
    return label_report(run, pipeline.n_wide), run.frames


# ================================================================================= model fitting
@dataclass
class FitReport:
    """A fitted model: its set-up from the data, training, and errors (meV/atom, meV/Å, meV/Å³)."""

    name: str
    model_path: str
    n_train: int
    n_valid: int
    n_test: int
    atomic_energies_eV: dict[str, float]
    e0_method: str
    e0_residual_rmse_meV_per_atom: float
    avg_num_neighbors: float
    interaction_scale_eV: float
    interaction_shift_eV: float
    n_parameters: int
    epochs_requested: int
    epochs_run: int
    best_epoch: int
    train_wall_s: float
    s_per_epoch_per_100_train_frames: float | None
    valid: dict[str, Any] | None
    test: dict[str, Any] | None
    test_groups: dict[str, dict[str, Any]]
    data_fingerprint: str
    complete: bool = True


def torch_dtype(name: str):
    import torch

    return {"float32": torch.float32, "float64": torch.float64}[name]


def new_mace(model: ModelSettings, train_set):
    """An untrained MACE whose E0s, neighbour count, scale and shift come from ``train_set``."""
    from ase.data import chemical_symbols

    from exprefine.data import average_neighbour_count, fit_atomic_energies, interaction_statistics
    from exprefine.potentials.mace import MacePotential, build_mace

    e0 = fit_atomic_energies(train_set, [6, 7])
    neighbours = average_neighbour_count(train_set, model.r_max_A)
    stats = interaction_statistics(train_set, e0.energies_eV)
    module = build_mace(list(ELEMENTS), model.r_max_A, model.channels, model.max_L, model.n_interactions,
                        e0.energies_eV, neighbours, model.seed, max_ell=model.max_ell,
                        correlation=model.correlation, interaction_scale_eV=stats.force_rms_eV_per_A,
                        interaction_shift_eV=stats.mean_energy_per_atom_eV)
    setup = {
        "atomic_energies_eV": {chemical_symbols[z]: v for z, v in e0.energies_eV.items()},
        "e0_residual_rmse_meV_per_atom": e0.residual_rmse_meV_per_atom,
        "e0_rank": e0.rank,
        "avg_num_neighbors": neighbours,
        "interaction_scale_eV": stats.force_rms_eV_per_A,
        "interaction_shift_eV": stats.mean_energy_per_atom_eV,
    }
    return MacePotential(module, dtype=torch_dtype(model.dtype)), setup


def frame_groups(frames: Sequence) -> dict[str, list[int]]:
    """Frame indices by origin: seed / explore, explore temperature, defect kind."""
    groups: dict[str, list[int]] = {}
    for i, atoms in enumerate(frames):
        kind = str(atoms.info.get("frame_kind", "unknown"))
        names = [kind, f"defects:{atoms.info.get('defect_kind', 'unknown')}"]
        if kind == "explore":
            names.append(f"explore:{float(atoms.info['md_temperature_K']):.0f}K")
        for name in names:
            groups.setdefault(name, []).append(i)
    return dict(sorted(groups.items()))


def errors_dict(errors) -> dict[str, Any]:
    return json_ready(asdict(errors))


def fit_stage(name: str, frames: Sequence, pipeline: Pipeline, fit: FitSettings, layout: Layout,
              model_out: Path) -> FitReport:
    """Fit a MACE to ``frames`` with the key-hash split; resumable; skipped when already done."""
    import torch

    from exprefine.data import dataset_from_atoms, evaluate_dft_errors, split_by_key
    from exprefine.training import TrainSettings, train

    if not frames:
        raise ValueError(f"{name}: no labelled frames to train on")
    stage_dir = layout.out_dir / name
    dataset = dataset_from_atoms(list(frames), source=f"{layout.out_dir.name}/{name}")
    keys = [str(a.info["frame_key"]) for a in frames]
    sp = split_by_key(dataset, keys, pipeline.split_fractions, pipeline.split_seed)
    fit_id = {k: v for k, v in asdict(fit).items() if k != "epochs"}
    fingerprint = hashlib.sha256(json.dumps(
        {"train": [keys[i] for i in sp.train_indices], "valid": [keys[i] for i in sp.valid_indices],
         "model": asdict(pipeline.model), "fit": fit_id}, sort_keys=True).encode()).hexdigest()[:16]
    summary_path = stage_dir / "summary.json"
    if summary_path.exists() and model_out.exists():
        done = json.loads(summary_path.read_text())
        if done.get("data_fingerprint") == fingerprint and done.get("epochs_requested") == fit.epochs:
            print(f"{name}: done already ({model_out}); test errors in {summary_path}", flush=True)
            return FitReport(**done)

    run_dir = layout.runs_dir / name
    checkpoint = run_dir / "checkpoints" / "train_latest.pt"
    stamp = run_dir / "fingerprint.txt"
    resume = False
    if checkpoint.exists():
        stored = stamp.read_text().strip() if stamp.exists() else ""
        if stored == fingerprint:
            resume = True
        elif pipeline.restart_training:
            shutil.rmtree(run_dir)
        else:
            raise ValueError(f"{run_dir} holds a {name} run on other frames or settings; "
                             "pass --restart-training to start it again")
    run_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(fingerprint + "\n")

    potential, setup = new_mace(pipeline.model, sp.train)
    potential.to(pipeline.device)
    settings = TrainSettings(
        epochs=fit.epochs, batch_size=fit.batch_size, learning_rate=fit.learning_rate,
        energy_weight=fit.energy_weight, force_weight=fit.force_weight, stress_weight=fit.stress_weight,
        seed=fit.seed, lr_schedule="plateau", lr_factor=fit.lr_factor, patience=fit.patience,
        min_learning_rate=fit.min_learning_rate, max_grad_norm=fit.max_grad_norm, eval_batch_size=8,
    )
    print(f"{name}: {len(sp.train_indices)} train / {len(sp.valid_indices)} valid / {len(sp.test_indices)} test "
          f"frames, {sum(p.numel() for p in potential.parameters())} parameters"
          + (f", resuming at epoch {len(torch.load(checkpoint, weights_only=True)['history'])}" if resume else ""),
          flush=True)
    result = train(potential, sp.train, sp.valid, settings, run_dir=run_dir, progress=pipeline.progress,
                   resume=resume)
    potential.save_model(model_out, dtype=torch.float64)
    stage_dir.mkdir(parents=True, exist_ok=True)
    for fname in ("train_log.csv", "learning_curves.png"):
        if (run_dir / fname).exists():
            shutil.copyfile(run_dir / fname, stage_dir / fname)

    test = groups = None
    if sp.test is not None:
        test = errors_dict(evaluate_dft_errors(potential, sp.test, batch_size=8))
        test_frames = [frames[i] for i in sp.test_indices]
        groups = {g: errors_dict(evaluate_dft_errors(potential, sp.test.subset(idx), batch_size=8))
                  for g, idx in frame_groups(test_frames).items()}
    epoch_s = [r.wall_time_s for r in result.history]
    report = FitReport(
        name=name,
        model_path=os.path.relpath(model_out, REPO) if model_out.is_relative_to(REPO) else str(model_out),
        n_train=len(sp.train_indices), n_valid=len(sp.valid_indices), n_test=len(sp.test_indices),
        atomic_energies_eV=setup["atomic_energies_eV"],
        e0_method="least squares of the training energies on the element counts (MACE's E0s='average')",
        e0_residual_rmse_meV_per_atom=setup["e0_residual_rmse_meV_per_atom"],
        avg_num_neighbors=setup["avg_num_neighbors"],
        interaction_scale_eV=setup["interaction_scale_eV"],
        interaction_shift_eV=setup["interaction_shift_eV"],
        n_parameters=sum(p.numel() for p in potential.parameters()),
        epochs_requested=fit.epochs,
        epochs_run=len(result.history),
        best_epoch=result.best_epoch,
        train_wall_s=result.wall_time_s,
        s_per_epoch_per_100_train_frames=(float(np.median(epoch_s)) * 100.0 / len(sp.train_indices)
                                          if epoch_s else None),
        valid=errors_dict(result.valid_after) if result.valid_after is not None else None,
        test=test,
        test_groups=groups or {},
        data_fingerprint=fingerprint,
    )
    summary_path.write_text(json.dumps(json_ready(asdict(report)), indent=1))
    return report


def write_split(pipeline: Pipeline, layout: Layout, frames: Sequence) -> Path:
    """The fixed split of all labelled frames (key-hash; standard exprefine split JSON + frame keys)."""
    from exprefine.data import dataset_from_atoms, split_by_key

    dataset = dataset_from_atoms(list(frames), source="gcn")
    keys = [str(a.info["frame_key"]) for a in frames]
    return split_by_key(dataset, keys, pipeline.split_fractions, pipeline.split_seed).save_indices(layout.split_path)


# ================================================================================ stage: explore
@dataclass
class ExploreReport:
    """MD runs done, frames stored and labelled, blow-ups, MD speed, label time per frame."""

    n_runs: int
    n_runs_md_done: int
    n_frames_md: int
    n_labelled: int
    n_computed: int
    complete: bool
    n_stops: int
    mean_steps_per_s: float | None
    mean_label_s: float | None


def explore_plan(pipeline: Pipeline) -> list[ExploreRun]:
    ex = pipeline.explore
    return explore_runs(ex.n_frames_total, ex.frames_per_run, EXPLORE_SYSTEMS[: ex.n_systems], ex.temperatures_K,
                        seed=pipeline.seed)


def run_md(pipeline: Pipeline, layout: Layout, run: ExploreRun, potential, model_sha: str) -> dict[str, Any]:
    """One exploration run: MD frames written to explore/md/<run>.extxyz.gz; returns its record."""
    from exprefine.data.exploration import ExplorationSettings, md_frames
    from exprefine.reference import write_shard

    ex = pipeline.explore
    settings = ExplorationSettings(
        temperature_K=run.temperature_K, n_frames=run.n_frames, stride_steps=ex.stride_steps,
        n_equilibration_steps=ex.n_equilibration_steps, timestep_fs=ex.timestep_fs,
        friction_per_ps=ex.friction_per_ps, seed=run.seed, min_distance_A=ex.min_distance_A,
        max_force_eV_per_A=ex.max_force_eV_per_A, max_temperature_factor=ex.max_temperature_factor,
        max_restarts=ex.max_restarts, max_nearest_neighbour_A=ex.max_nearest_neighbour_A,
    )
    start = explore_start(run.system, pipeline.recipe.supercell, pipeline.recipe.lattice_constant_A)
    result = md_frames(potential, start, settings, progress=pipeline.progress, description=f"MD {run.run_id}")
    for k, atoms in enumerate(result.frames):
        atoms.info.update(explore_run=run.run_id, explore_frame=k)
    if result.frames:
        write_shard(layout.md_dir / f"{run.run_id}.extxyz.gz", result.frames)
    for line in result.stops:
        print(f"  {run.run_id}: stopped, {line}", flush=True)
    return {
        "run_id": run.run_id, "system": run.system.name, "temperature_K": run.temperature_K,
        "n_frames_requested": run.n_frames, "n_frames": len(result.frames), "n_steps": result.n_steps,
        "wall_s": result.wall_s, "steps_per_s": result.steps_per_s, "n_atoms": len(start),
        "stops": result.stops, "model_sha256": model_sha, "md_seed": run.seed,
    }


def stage_explore(pipeline: Pipeline, layout: Layout, budget: int | None) -> tuple[ExploreReport, list]:
    """MD then labels, run by run (a finished run's labels make one committed shard)."""
    from exprefine.potentials.mace import MacePotential
    from exprefine.reference import read_shard, shard_path

    if not layout.train0_model.exists():
        raise FileNotFoundError(f"no preliminary model {layout.train0_model}: run --stage train0 first")
    records: dict[str, Any] = (json.loads(layout.explore_runs_path.read_text())
                               if layout.explore_runs_path.exists() else {})
    potential = None
    model_sha = file_sha256(layout.train0_model)
    frames_all: list = []
    n_computed = 0
    times: list[float] = []
    complete = True
    for run in explore_plan(pipeline):
        labels = shard_path(layout.explore_dir, run.run_id)
        md_file = layout.md_dir / f"{run.run_id}.extxyz.gz"
        if labels.exists() and not md_file.exists():
            frames_all.extend(read_shard(labels))  # finished: MD done, labels complete
            continue
        if not md_file.exists():
            if run.run_id in records and records[run.run_id]["n_frames"] == 0:
                continue  # every attempt blew up before the first frame
            if budget is not None and budget <= 0:
                complete = False
                continue
            if potential is None:
                potential = MacePotential.from_file(layout.train0_model, dtype=torch_dtype(pipeline.model.dtype))
            records[run.run_id] = run_md(pipeline, layout, run, potential, model_sha)
            layout.explore_runs_path.parent.mkdir(parents=True, exist_ok=True)
            layout.explore_runs_path.write_text(json.dumps(json_ready(records), indent=1))
            if not md_file.exists():
                continue
        md = read_shard(md_file)
        result = label_into_shards(pipeline, layout, [(run.run_id, md)], layout.explore_dir, f"label {run.run_id}",
                                   budget)
        n_computed += result.n_computed
        times += result.label_wall_s
        if budget is not None:
            budget -= result.n_computed
        frames_all.extend(result.frames)
        if result.complete:
            md_file.unlink()  # the labelled shard holds the same geometries
        else:
            complete = False
    speeds = [r["steps_per_s"] for r in records.values() if r.get("n_steps")]
    report = ExploreReport(
        n_runs=len(explore_plan(pipeline)),
        n_runs_md_done=len(records),
        n_frames_md=sum(r["n_frames"] for r in records.values()),
        n_labelled=len(frames_all),
        n_computed=n_computed,
        complete=complete,
        n_stops=sum(len(r["stops"]) for r in records.values()),
        mean_steps_per_s=float(np.mean(speeds)) if speeds else None,
        mean_label_s=float(np.mean(times)) if times else None,
    )
    return report, frames_all


# ================================================================================== composition
def composition(frames: Sequence) -> dict[str, Any]:
    """Counts of the labelled frames by origin, stacking, defects, temperature; atoms per frame."""
    def count(values) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in values:
            out[str(v)] = out.get(str(v), 0) + 1
        return dict(sorted(out.items()))

    def temperature_bin(atoms) -> str:
        t = atoms.info.get("md_temperature_K", atoms.info.get("rattle_temperature_K"))
        if t is None:
            return "unknown"
        lo = 100 * int(float(t) // 100)
        return f"{lo}-{lo + 100} K" if atoms.info.get("frame_kind") != "explore" else f"{float(t):.0f} K (MD)"

    return {
        "n_frames": len(frames),
        "by_kind": count(a.info.get("frame_kind") for a in frames),
        "by_stacking": count(a.info.get("stacking") for a in frames),
        "by_defects": count(a.info.get("defect_kind") for a in frames),
        "by_temperature": count(temperature_bin(a) for a in frames),
        "by_n_atoms": count(len(a) for a in frames),
        "interlayer_spacing_A": [float(min(a.info.get("interlayer_spacing_A", np.nan) for a in frames)),
                                 float(max(a.info.get("interlayer_spacing_A", np.nan) for a in frames))]
        if frames else None,
    }


# ======================================================================================= README
def file_table(layout: Layout, extra: Sequence[Path]) -> list[str]:
    rows = ["| file | size |", "|---|---|"]
    paths = sorted(p for p in layout.out_dir.rglob("*") if p.is_file()
                   and not p.is_relative_to(layout.cache_dir) and not p.is_relative_to(layout.runs_dir))
    for path in list(paths) + [p for p in extra if p.exists() and p not in paths]:
        rel = os.path.relpath(path, layout.out_dir)
        rows.append(f"| `{rel}` | {path.stat().st_size / 1024:.0f} KiB |")
    return rows


def fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def write_readme(pipeline: Pipeline, layout: Layout, manifest: dict[str, Any]) -> Path:
    """dataset/README.md: what is here, exactly how it was made, and how to make it again."""
    fixed = manifest["fixed"]
    recipe = fixed["recipe"]
    ex = fixed["explore"]
    stages = manifest.get("stages", {})
    lines = [
        "# g-C3N4 training set (GFN1-xTB without dispersion) and base MACE model",
        "",
        "Written by `examples/gcn/make_dataset.py` after every run; do not edit by hand.",
        "" if not pipeline.smoke else "**Smoke preset (`--smoke`): tiny sizes and 1×1 cells, a test of the "
                                      "pipeline only — not a data set.**",
        "",
        "## Files",
        "",
        *file_table(layout, [pipeline.model_path]),
        "",
        "Labelled frames are extended XYZ (gzip): `energy` (eV), `forces` (eV/Å), `stress` (eV/Å³, ASE sign "
        "and Voigt order), per-atom `roles` (crystallographic site of the ideal layer), `layer`, `defect` "
        "(C on an N site), and in the comment line every choice that made the frame plus `frame_key` (the "
        "SHA-1 of the geometry before labelling), `label_method`, `electronic_temperature_K`, `label_wall_s`. "
        "Read them with `exprefine.data.read_extxyz(path)` or `ase.io.read(path, ':')`.",
        "",
        "## Label method",
        "",
        f"GFN1-xTB from tblite with the `dispersion` block removed from its parameter table "
        f"(`exprefine.reference.make_calculator('label')`): the \"PBE-like\" labels of issue 5. Fermi smearing at "
        f"{fixed['label_method']['electronic_temperature_K']} K, tblite accuracy {fixed['label_method']['accuracy']}, "
        "Γ point only, no spin polarisation, SCC warm start between consecutive frames with the same atoms "
        "(frames of a shard are computed grouped by composition). Every frame has an even electron count "
        "(carbon defects come in pairs).",
        "",
        "## Seed configurations (stage `seed`)",
        "",
        f"{stages.get('seed', {}).get('n_frames', '?')} frames requested; frame i is drawn from "
        f"`numpy.random.default_rng([{fixed['seed']}, i])` (`dataset_recipe.build_seed_frame`), independent of "
        "the number of frames. Each is a bulk bilayer (2 layers per cell, c = 2d) of "
        f"{recipe['supercell'][0]}×{recipe['supercell'][1]} hexagonal cells "
        f"(a = {recipe['lattice_constant_A']} Å before strain):",
        "",
        f"- stacking {' or '.join(recipe['stackings'])} (equal odds), interlayer spacing d ~ "
        f"U({recipe['spacing_range_A'][0]}, {recipe['spacing_range_A'][1]}) Å;",
        f"- corrugation with probability {recipe['corrugation_probability']}: amplitude ~ "
        f"U({recipe['corrugation_range_A'][0]}, {recipe['corrugation_range_A'][1]}) Å, wavevector (1,0), (0,1) or "
        "(1,1) of the supercell, random phase, the same for both layers;",
        f"- the upper layer slid in-plane by a random vector of length ≤ {recipe['max_layer_shift_A']} Å;",
        "- carbon defects: " + ", ".join(f"{k} {p:.0%}" for k, p in recipe["defect_odds"])
        + " (central_N / bridging_N: a pair of C on that site; mixed: one of each), at one of "
        f"{recipe['n_defect_placements']} fixed placements per kind;",
        f"- in-plane strain: F = 1 + ε, ε_xx, ε_yy, ε_xy ~ U(−{recipe['max_strain']}, {recipe['max_strain']});",
        f"- rattle: independent Gaussian displacements, σ = sqrt(k_B T / k_eff) with T ~ "
        f"U({recipe['temperature_range_K'][0]:.0f}, {recipe['temperature_range_K'][1]:.0f}) K, "
        f"k_eff = {recipe['force_constant_in_plane_eV_per_A2']} eV/Å² in-plane (≈ the C–N stretch constant) and "
        f"{recipe['force_constant_out_of_plane_eV_per_A2']} eV/Å² out of plane (soft sheet bending):",
        "",
        "  | T (K) | σ_xy (Å) | σ_z (Å) |",
        "  |---|---|---|",
        *[f"  | {t} | {thermal_rattle_sigma_A(t, recipe['force_constant_in_plane_eV_per_A2']):.3f} | "
          f"{thermal_rattle_sigma_A(t, recipe['force_constant_out_of_plane_eV_per_A2']):.3f} |"
          for t in (100, 300, 600, 1000)],
        "",
        f"Shards of {fixed['shard_size']} frames: `seed/seed_NNN.extxyz.gz` holds frames "
        f"NNN·{fixed['shard_size']} … (NNN+1)·{fixed['shard_size']} − 1 in order.",
        "",
        "## MD exploration (stage `explore`)",
        "",
        f"Langevin (BAOAB) NVT driven by the preliminary model `train0/train0.model`, time step "
        f"{ex['timestep_fs']} fs, friction {ex['friction_per_ps']} ps⁻¹, {ex['n_equilibration_steps']} equilibration "
        f"steps from the ideal structure, then one frame every {ex['stride_steps']} steps, {ex['frames_per_run']} "
        f"frames per run. Temperatures {', '.join(f'{t:.0f}' for t in ex['temperatures_K'])} K; systems (bulk "
        f"bilayers, {recipe['supercell'][0]}×{recipe['supercell'][1]} cells, planar start):",
        "",
        *[f"- `{s.name}`: {s.stacking}, d = {s.spacing_A} Å, defects {s.defect_kind}"
          for s in EXPLORE_SYSTEMS[: ex["n_systems"]]],
        "",
        "Runs go round-robin over (system, temperature). Frames are kept by uniform subsampling in time "
        "(no committee or force-based selection). Blow-up guard: an attempt stops at non-finite values, a "
        f"kinetic temperature above {ex['max_temperature_factor']}× the target, two atoms closer than "
        f"{ex['min_distance_A']} Å, a force above {ex['max_force_eV_per_A']} eV/Å or an atom without a neighbour "
        f"within {ex['max_nearest_neighbour_A']} Å (a broken bond) at a stored frame; frames "
        f"before the stop are kept, and up to {ex['max_restarts']} new attempts (fresh velocities) follow. "
        "`explore/runs.json` records every run (frames, steps, speed, stops, the model's SHA-256).",
        "",
    ]
    lines += [
        "## Separated layers (stage `wide`)",
        "",
        f"{stages.get('wide', {}).get('n_frames', '?')} frames drawn exactly like the seed frames but with "
        f"d ~ U({fixed['wide']['spacing_range_A'][0]}, {fixed['wide']['spacing_range_A'][1]}) Å; frame i uses the "
        f"stream `default_rng([{fixed['seed']}, {fixed['wide']['index_offset']} + i])` "
        "(`dataset_recipe.wide_frames`). The seed and MD frames stop near d = 4 Å, and a model trained on them "
        "alone does not know that the energy levels off as the layers separate (the first DeePMD model bound the "
        "layers by a spurious 47 meV/atom at 3.85 Å). Shards `wide/wide_NNN.extxyz.gz` as for the seed stage.",
        "",
    ]
    comp = stages.get("composition")
    if comp:
        lines += ["## Composition of the labelled frames", "", "```", json.dumps(comp, indent=1), "```", ""]
    model = asdict(pipeline.model)
    lines += [
        "## Models (stages `train0` and `train`)",
        "",
        f"MACE (`exprefine.potentials.mace.build_mace`, ScaleShiftMACE): {model['channels']} channels, hidden L ≤ "
        f"{model['max_L']}, edge spherical harmonics up to ℓ = {model['max_ell']}, correlation order "
        f"{model['correlation']}, r_max = {model['r_max_A']} Å, {model['n_interactions']} interactions, 8 Bessel "
        f"functions, radial MLP 64-64-64; trained in {model['dtype']}, saved in float64; initialisation seed "
        f"{model['seed']}. E0s: least squares of the training energies on the element counts (MACE's "
        "`E0s='average'`), not isolated-atom energies; avg_num_neighbors, scale (RMS force) and shift (mean "
        "per-atom energy after E0s) from the training frames. Adam with a plateau schedule, loss "
        "w_E·mean((ΔE/N)²) + w_F·mean(ΔF²) + w_S·mean(Δσ²); the epoch with the lowest validation loss is kept.",
        "",
        f"Split (`split.json`): key-hash — frame k is in train / valid / test when u_k = SHA-256(\"{pipeline.split_seed}:"
        f"frame_key\") / 2⁶⁴ falls below {pipeline.split_fractions[0]}, "
        f"{pipeline.split_fractions[0] + pipeline.split_fractions[1]:.2f}, "
        "or above; a frame's subset never changes when frames are added, and train0 used the same rule on the seed "
        "frames. `exprefine.data.load_split(dataset, 'split.json')` applies it to the frames in the order "
        "seed shards, explore shards in run order, then wide shards.",
        "",
    ]
    for name in ("train0", "train"):
        rep = stages.get(name)
        if not rep:
            continue
        fit = manifest.get("fit_settings", {}).get(name, {})
        lines += [f"### {name}", "",
                  f"{rep['n_train']} / {rep['n_valid']} / {rep['n_test']} frames (train / valid / test), "
                  f"{rep['n_parameters']} parameters, {rep['epochs_run']} epochs (best {rep['best_epoch']}), "
                  f"{rep['train_wall_s'] / 60:.1f} min; settings {json.dumps(fit)}. "
                  f"E0 (eV): {json.dumps({k: round(v, 4) for k, v in rep['atomic_energies_eV'].items()})}, "
                  f"residual {rep['e0_residual_rmse_meV_per_atom']:.2f} meV/atom; "
                  f"avg_num_neighbors {rep['avg_num_neighbors']:.2f}.", ""]
        if rep.get("test"):
            lines += ["| test subset | frames | E RMSE (meV/atom) | F RMSE (meV/Å) | σ RMSE (meV/Å³) |",
                      "|---|---|---|---|---|"]
            rows = [("all", rep["test"])] + list(rep.get("test_groups", {}).items())
            for g, e in rows:
                lines.append(f"| {g} | {e['n_frames']} | {fmt(e['energy_rmse_meV_per_atom'])} | "
                             f"{fmt(e['force_rmse_meV_per_A'])} | {fmt(e['stress_rmse_meV_per_A3'])} |")
            lines += ["", "Errors against the label method. The first user's PBE-trained model: 0.7 meV/atom.", ""]
    costs = manifest.get("costs", {})
    if costs:
        lines += ["## Measured costs (this machine)", "", "```", json.dumps(costs, indent=1), "```", ""]
    lines += ["## How it was made", "", "Commands run in this folder's history (newest last):", "", "```"]
    for entry in manifest.get("history", [])[-30:]:
        lines.append(f"# {entry['time']}  ({entry['wall_s']:.0f} s, stages {', '.join(entry['stages'])})")
        lines.append("OMP_NUM_THREADS=1 python examples/gcn/make_dataset.py " + " ".join(entry["argv"]))
    lines += ["```", "", "Versions of the last run: `" + json.dumps(manifest.get("versions", {})) + "`", "",
              "## How to regenerate", "",
              "From the repository root, with `pip install -e '.[reference,mace]'`:", "", "```",
              "export OMP_NUM_THREADS=1",
              "python examples/gcn/make_dataset.py --out NEW_DIR --model NEW_DIR/base_mace.model"
              + ("" if not pipeline.smoke else " --smoke"),
              "```", "",
              "The seed frames and their labels are reproduced exactly (to the SCC convergence, ~1e-4 eV/Å); the MD "
              "frames depend on the preliminary model's floating-point arithmetic and are reproduced only on the "
              "same software and hardware. Any stage can be killed and rerun; finished frames are never "
              "recomputed. `--max-new-labels N` labels in pieces of N frames.", ""]
    path = layout.out_dir / "README.md"
    path.write_text("\n".join(lines))
    return path


# ========================================================================================= main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stage", choices=STAGES + ("all",), default="all")
    p.add_argument("--smoke", action="store_true",
                   help="tiny end-to-end run (1×1 cells, a few frames, 2 epochs) into dataset_smoke/")
    p.add_argument("--out", type=Path, help="output folder (default examples/gcn/dataset)")
    p.add_argument("--model", type=Path, help="base model file (default examples/gcn/models/base_mace.model)")
    p.add_argument("--seed", type=int, default=0, help="seed of the configurations and MD runs")
    p.add_argument("--n-seed", type=int, help="seed frames (default 600)")
    p.add_argument("--n-wide", type=int, help="frames with separated layers (default 150)")
    p.add_argument("--n-explore", type=int, help="MD frames wanted over all runs (default 960)")
    p.add_argument("--frames-per-run", type=int, help="MD frames per run (default 40)")
    p.add_argument("--stride-steps", type=int, help="MD steps between frames (default 20)")
    p.add_argument("--supercell", type=int, nargs=2, metavar=("N1", "N2"), help="in-plane cells (default 2 2)")
    p.add_argument("--shard-size", type=int, help="seed frames per committed shard (default 100)")
    p.add_argument("--epochs0", type=int, help="epochs of the preliminary model (default 20)")
    p.add_argument("--epochs", type=int, help="epochs of the base model (default 60)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--learning-rate", type=float)
    p.add_argument("--energy-weight", type=float)
    p.add_argument("--force-weight", type=float)
    p.add_argument("--stress-weight", type=float)
    p.add_argument("--channels", type=int)
    p.add_argument("--max-L", type=int, choices=(0, 1))
    p.add_argument("--max-ell", type=int)
    p.add_argument("--correlation", type=int)
    p.add_argument("--max-new-labels", type=int, help="stop after labelling this many new frames")
    p.add_argument("--restart-training", action="store_true",
                   help="discard a training checkpoint made on other frames or settings")
    p.add_argument("--threads", type=int, default=1, help="torch threads (tblite: OMP_NUM_THREADS)")
    p.add_argument("--device", default="cpu",
                   help="torch device of the MACE training (e.g. cuda; not yet run on a GPU); MD and labels "
                   "stay on the CPU")
    p.add_argument("--no-progress", action="store_true")
    return p


def pipeline_from_args(args: argparse.Namespace) -> Pipeline:
    """Defaults for the issue, or the smoke preset; explicit flags override either."""
    smoke = bool(args.smoke)
    out = args.out or (HERE / ("dataset_smoke" if smoke else "dataset"))
    model_path = args.model or (out / "base_mace.model" if smoke else HERE / "models" / "base_mace.model")
    p = Pipeline(out_dir=Path(out).resolve(), model_path=Path(model_path).resolve(), seed=args.seed, smoke=smoke,
                 progress=not args.no_progress, max_new_labels=args.max_new_labels,
                 restart_training=args.restart_training, device=args.device)
    if smoke:
        p.n_seed, p.shard_size, p.n_wide = 6, 4, 2
        p.recipe = replace(p.recipe, supercell=(1, 1))
        p.explore = replace(p.explore, n_frames_total=8, frames_per_run=2, stride_steps=5, n_equilibration_steps=10,
                            n_systems=1)
        p.train0 = replace(p.train0, epochs=2, batch_size=2)
        p.train = replace(p.train, epochs=2, batch_size=2)
    if args.n_seed is not None:
        p.n_seed = args.n_seed
    if args.n_wide is not None:
        p.n_wide = args.n_wide
    if args.shard_size is not None:
        p.shard_size = args.shard_size
    if args.supercell is not None:
        p.recipe = replace(p.recipe, supercell=tuple(args.supercell))
    overrides = {"n_frames_total": args.n_explore, "frames_per_run": args.frames_per_run,
                 "stride_steps": args.stride_steps}
    p.explore = replace(p.explore, **{k: v for k, v in overrides.items() if v is not None})
    fit_overrides = {"batch_size": args.batch_size, "learning_rate": args.learning_rate,
                     "energy_weight": args.energy_weight, "force_weight": args.force_weight,
                     "stress_weight": args.stress_weight}
    fit_overrides = {k: v for k, v in fit_overrides.items() if v is not None}
    p.train0 = replace(p.train0, **fit_overrides, **({"epochs": args.epochs0} if args.epochs0 is not None else {}))
    p.train = replace(p.train, **fit_overrides, **({"epochs": args.epochs} if args.epochs is not None else {}))
    model_overrides = {"channels": args.channels, "max_L": args.max_L, "max_ell": args.max_ell,
                       "correlation": args.correlation}
    p.model = replace(p.model, **{k: v for k, v in model_overrides.items() if v is not None})
    if min(p.recipe.supercell) < 2 and not smoke:
        raise ValueError(f"cells must be at least 2×2 in-plane for a Γ-point method, got "
                         f"{p.recipe.supercell[0]}×{p.recipe.supercell[1]} (1×1 only with --smoke)")
    if p.n_seed < 1 or p.shard_size < 1:
        raise ValueError("--n-seed and --shard-size must be ≥ 1")
    return p


def stage_list(stage: str) -> list[str]:
    return list(STAGES) if stage == "all" else [stage]


def run_pipeline(pipeline: Pipeline, stages: Sequence[str], argv: Sequence[str]) -> int:
    """Run ``stages`` in order; stop (exit 0, with a message) where a stage is not complete yet."""
    layout = Layout(pipeline.out_dir)
    layout.out_dir.mkdir(parents=True, exist_ok=True)
    (layout.out_dir / ".gitignore").write_text("# working label caches and training checkpoints (large)\n"
                                               "cache/\nruns/\n")
    manifest = load_manifest(layout)
    check_fixed(manifest, pipeline)
    manifest.setdefault("stages", {})
    manifest.setdefault("costs", {})
    manifest.setdefault("fit_settings", {})
    t0 = time.perf_counter()
    budget = pipeline.max_new_labels
    seed_frames_done: list | None = None
    ran: list[str] = []
    try:
        for stage in stages:
            ran.append(stage)
            if stage in ("seed", "train0") and seed_frames_done is None:
                report, seed_frames_done = stage_seed(pipeline, layout, budget if stage == "seed" else 0)
                if stage == "seed" and budget is not None:
                    budget -= report.n_computed
                manifest["stages"]["seed"] = asdict(report)
                if report.mean_label_s is not None:
                    manifest["costs"]["seed_label_s_per_frame"] = report.mean_label_s
                    manifest["costs"]["seed_n_atoms"] = len(seed_frames_done[0])
                print(f"seed: {report.n_labelled}/{report.n_frames} frames labelled ({report.n_computed} now"
                      + (f", {report.mean_label_s:.2f} s/frame" if report.mean_label_s else "") + ")", flush=True)
                if not report.complete:
                    to_go = report.n_frames - report.n_labelled
                    if stage != "seed":
                        raise ValueError(f"the seed stage is not complete ({to_go} frames to go): run --stage seed")
                    print(f"seed: incomplete ({to_go} frames to go): run the same command again to continue",
                          flush=True)
                    return 0
            if stage == "train0":
                rep = fit_stage("train0", seed_frames_done, pipeline, pipeline.train0, layout, layout.train0_model)
                manifest["stages"]["train0"] = asdict(rep)
                manifest["fit_settings"]["train0"] = asdict(pipeline.train0)
                manifest["costs"]["train0_s_per_epoch_per_100_frames"] = rep.s_per_epoch_per_100_train_frames
                print_errors(rep)
            elif stage == "explore":
                report, _ = stage_explore(pipeline, layout, budget)
                if budget is not None:
                    budget -= report.n_computed
                manifest["stages"]["explore"] = asdict(report)
                if report.mean_steps_per_s is not None:
                    manifest["costs"]["explore_md_steps_per_s"] = report.mean_steps_per_s
                if report.mean_label_s is not None:
                    manifest["costs"]["explore_label_s_per_frame"] = report.mean_label_s
                print(f"explore: {report.n_runs_md_done}/{report.n_runs} MD runs, {report.n_labelled} frames labelled "
                      f"({report.n_computed} now), {report.n_stops} blow-up stops", flush=True)
                if not report.complete:
                    print("explore: incomplete: run the same command again to continue", flush=True)
                    return 0
            elif stage == "wide":
                report, _ = stage_wide(pipeline, layout, budget)
                if budget is not None:
                    budget -= report.n_computed
                manifest["stages"]["wide"] = asdict(report)
                if report.mean_label_s is not None:
                    manifest["costs"]["wide_label_s_per_frame"] = report.mean_label_s
                print(f"wide: {report.n_labelled}/{report.n_frames} frames labelled ({report.n_computed} now)", flush=True)
                if not report.complete:
                    print("wide: incomplete: run the same command again to continue", flush=True)
                    return 0
            elif stage == "train":
                seed_report, seed_done = stage_seed(pipeline, layout, 0)
                explore_report, explore_done = stage_explore(pipeline, layout, 0)
                wide_report, wide_done = stage_wide(pipeline, layout, 0)
                if not (seed_report.complete and explore_report.complete and wide_report.complete):
                    raise ValueError("the seed, explore and wide stages are not complete: run them first")
                frames = list(seed_done) + list(explore_done) + list(wide_done)
                manifest["stages"]["composition"] = composition(frames)
                write_split(pipeline, layout, frames)
                rep = fit_stage("train", frames, pipeline, pipeline.train, layout, pipeline.model_path)
                manifest["stages"]["train"] = asdict(rep)
                manifest["fit_settings"]["train"] = asdict(pipeline.train)
                manifest["costs"]["train_s_per_epoch_per_100_frames"] = rep.s_per_epoch_per_100_train_frames
                print_errors(rep)
    finally:
        manifest["versions"] = versions()
        manifest["history"].append({"time": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                                    "argv": list(argv), "stages": ran, "wall_s": time.perf_counter() - t0})
        save_manifest(layout, manifest)
        write_readme(pipeline, layout, manifest)
    return 0


def print_errors(rep: FitReport) -> None:
    if rep.test:
        t = rep.test
        print(f"{rep.name}: test RMSE {t['energy_rmse_meV_per_atom']:.3g} meV/atom, {t['force_rmse_meV_per_A']:.3g} "
              f"meV/Å ({rep.n_test} frames) → {rep.model_path}", flush=True)
    else:
        print(f"{rep.name}: no test frames → {rep.model_path}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import warnings

    import torch

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=".*TorchScript.*")
    warnings.filterwarnings("ignore", message=".*torch.jit.*")
    warnings.filterwarnings("ignore", message=".*TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.*")
    try:
        pipeline = pipeline_from_args(args)
        return run_pipeline(pipeline, stage_list(args.stage), argv)
    except KeyboardInterrupt:
        print("make_dataset: interrupted; run the same command again to continue", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, RuntimeError, ImportError) as exc:
        print(f"make_dataset: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
