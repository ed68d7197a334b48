"""Train the base DeePMD model (se_e2_a) of the g-C3N4 case study with DeePMD-kit's own ``dp --pt train``.

The first user trains DeePMD models with ``dp train`` and runs them in LAMMPS; this script does
the same on the labelled frames of ``dataset/`` (make_dataset.py: every ``seed/*.extxyz.gz``,
``explore/*.extxyz.gz`` and ``wide/*.extxyz.gz`` shard), with the data set's fixed key-hash split (the frames of
``split.json``'s test subset are never trained on; the split is recomputed from the frame keys,
so it is the same one for any number of shards):

  1. writes the train / valid / test frames as DeePMD npy systems (exprefine.data.write_deepmd);
  2. writes ``input.json`` (se_e2_a, r_cut 6 Å so that interlayer contacts are inside, energy,
     force and virial loss) and runs ``dp --pt train`` — resumed with ``--restart`` from the last
     checkpoint when the script is run again, skipped when the run has reached ``--steps``;
  3. freezes the model (``dp --pt freeze``), runs ``dp --pt test`` on the test systems, and
     evaluates the frozen model through exprefine's DeePMD adapter on the test frames (energy
     RMSE in meV/atom, force RMSE in meV/Å, per element, stress);
  4. copies the checkpoint (without optimizer state) and the frozen model to
     ``models/base_deepmd.pt`` / ``.pth`` and writes
     ``models/base_deepmd.json`` (errors, data, settings, wall time, versions).

    export OMP_NUM_THREADS=1
    python examples/gcn/train_deepmd.py                 # 10,000 steps (see models/base_deepmd.json for the cost)
    python examples/gcn/train_deepmd.py --steps 20000   # continue the same run to 20,000 steps
    python examples/gcn/train_deepmd.py --smoke         # 20 steps into dataset/runs/deepmd_smoke, nothing copied

Work files live in ``dataset/runs/deepmd/`` (git-ignored): data, input.json, lcurve.out,
checkpoints, train.log.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # make_dataset.py's Pipeline.split_fractions
SPLIT_SEED = 0  # make_dataset.py's Pipeline.split_seed


def model_section(rcut_A: float) -> dict:
    """The se_e2_a model: small enough to train on 1 CPU core in well under an hour."""
    return {
        "type_map": ["C", "N"],
        "descriptor": {"type": "se_e2_a", "sel": "auto", "rcut_smth": 0.5, "rcut": rcut_A,
                       "neuron": [16, 32, 64], "axis_neuron": 8, "resnet_dt": False, "seed": 1},
        "fitting_net": {"neuron": [120, 120, 120], "resnet_dt": True, "seed": 1},
    }


def input_json(steps: int, rcut_A: float, data: Path) -> dict:
    decay = max(1, steps // 40)  # the learning rate falls from 1e-3 to 1e-5 in 40 decays
    return {
        "model": model_section(rcut_A),
        "learning_rate": {"type": "exp", "decay_steps": decay, "start_lr": 1.0e-3, "stop_lr": 1.0e-5},
        "loss": {"type": "ener", "start_pref_e": 0.02, "limit_pref_e": 2.0, "start_pref_f": 1000.0,
                 "limit_pref_f": 1.0, "start_pref_v": 0.02, "limit_pref_v": 1.0},
        "training": {
            "training_data": {"systems": sorted(str(p) for p in (data / "train").iterdir()), "batch_size": "auto"},
            "validation_data": {"systems": sorted(str(p) for p in (data / "valid").iterdir()), "batch_size": 1,
                                "numb_btch": 4},
            "numb_steps": steps,
            "seed": 10,
            "disp_file": "lcurve.out",
            "disp_freq": max(1, min(200, steps // 20)),
            "save_freq": max(1, min(1000, steps // 10)),
        },
    }


def labelled_frames(dataset: Path, first_shard_only: bool = False):
    """(DFTDataset, shard paths) of every finished shard: seed, exploration, then wide spacings
    (or the first seed shard alone)."""
    from exprefine.data import read_extxyz_files

    shards = [path for stage in ("seed", "explore", "wide") for path in sorted((dataset / stage).glob("*.extxyz.gz"))]
    shards = shards[:1] if first_shard_only else shards
    if not shards:
        raise FileNotFoundError(f"no labelled shards under {dataset}/seed or {dataset}/explore: run make_dataset.py")
    return read_extxyz_files(shards, key="frame_key"), shards


def trained_steps(work: Path) -> int:
    """The last step of ``lcurve.out`` (0 if there is none)."""
    lcurve = work / "lcurve.out"
    if not lcurve.exists():
        return 0
    rows = [r for r in lcurve.read_text().splitlines() if r.strip() and not r.startswith("#")]
    return int(float(rows[-1].split()[0])) if rows else 0


def data_fingerprint(keys: list[str], parts, rcut_A: float) -> str:
    """Hash of the training/validation frame keys and the cutoff, which a restarted run must share.

    The step count is not in it: a rerun with a larger ``--steps`` continues the run (its
    learning-rate decay is then set from the new count from that step on).
    """
    import hashlib

    blob = json.dumps({"train": sorted(keys[i] for i in parts.train_indices),
                       "valid": sorted(keys[i] for i in parts.valid_indices),
                       "rcut_A": rcut_A}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def dp_executable() -> str:
    """``dp`` of this Python's environment (a venv need not be activated), else the one on PATH."""
    local = Path(sys.executable).parent / "dp"
    return str(local) if local.exists() else "dp"


def run(cmd: list[str], work: Path, log: Path) -> None:
    """Run a ``dp`` command in ``work`` (OMP_NUM_THREADS 1 unless set), output appended to ``log``.

    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``: ``dp`` imports e3nn, and e3nn 0.4.4 (the version
    mace-torch pins) loads its constants with a plain ``torch.load`` that torch ≥ 2.6 refuses
    otherwise (see exprefine.potentials.deepmd).
    """
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    cmd = [dp_executable(), *cmd[1:]] if cmd[0] == "dp" else cmd
    with log.open("a") as out:
        out.write(f"\n$ {' '.join(cmd)}\n")
        out.flush()
        code = subprocess.call(cmd, cwd=work, stdout=out, stderr=subprocess.STDOUT, env=env)
    if code != 0:
        raise RuntimeError(f"dp {' '.join(cmd[1:3])} failed with exit code {code}; see {log}")


def strip_optimizer(checkpoint: Path, out: Path) -> dict:
    """Copy a ``dp --pt train`` checkpoint without its optimizer state (a third of the size).

    The copy loads in exprefine (``kind: deepmd``), ``dp --pt freeze`` and ``dp --pt test``; to
    continue training, restart from the full checkpoint in the work folder. Returns the model
    parameters as trained (``sel`` resolved from the data).
    """
    import torch

    data = torch.load(checkpoint, map_location="cpu", weights_only=True)
    torch.save({"model": data["model"]}, out)
    return data["model"]["_extra_state"]["model_params"]


def versions() -> dict[str, str]:
    import deepmd
    import torch

    import exprefine

    return {"python": sys.version.split()[0], "torch": torch.__version__, "deepmd-kit": deepmd.__version__,
            "exprefine": exprefine.__version__}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=HERE / "dataset")
    p.add_argument("--models", type=Path, default=HERE / "models")
    p.add_argument("--steps", type=int, default=10000, help="total training steps (a rerun continues the run)")
    p.add_argument("--rcut-A", type=float, default=6.0)
    p.add_argument("--smoke", action="store_true",
                   help="20 steps on the first seed shard into dataset/runs/deepmd_smoke; nothing copied")
    p.add_argument("--work", type=Path, default=None,
                   help="the training folder (default dataset/runs/deepmd, --smoke: dataset/runs/deepmd_smoke)")
    args = p.parse_args(argv)

    from exprefine.data import evaluate_dft_errors, split_by_key, write_deepmd
    from exprefine.potentials.deepmd import DeepmdPotential

    steps = 20 if args.smoke else args.steps
    work = args.work or args.dataset / "runs" / ("deepmd_smoke" if args.smoke else "deepmd")
    work.mkdir(parents=True, exist_ok=True)
    log = work / "train.log"
    (dataset, keys), shards = labelled_frames(args.dataset, first_shard_only=args.smoke)
    parts = split_by_key(dataset, keys, SPLIT_FRACTIONS, SPLIT_SEED)
    data = work / "data"
    for name, subset in (("train", parts.train), ("valid", parts.valid), ("test", parts.test)):
        write_deepmd(subset, data / name, overwrite=True)
    (work / "input.json").write_text(json.dumps(input_json(steps, args.rcut_A, data), indent=1))
    print(f"{dataset.n_frames} frames from {len(shards)} shards: {parts.train.n_frames} train, "
          f"{parts.valid.n_frames} valid, {parts.test.n_frames} test -> {data}")

    t0 = time.perf_counter()
    done = trained_steps(work)
    checkpoint = work / "model.ckpt.pt"
    fingerprint = data_fingerprint(keys, parts, args.rcut_A)
    stamp = work / "run.json"
    run_record = json.loads(stamp.read_text()) if stamp.exists() else {}
    if done and run_record.get("fingerprint") != fingerprint:
        raise SystemExit(f"{work} holds a run on other frames or settings (made before these shards were "
                         f"added?): delete {work} to train afresh")
    run_record = {"fingerprint": fingerprint, "wall_s": run_record.get("wall_s", 0.0)}
    stamp.write_text(json.dumps(run_record))
    if done < steps:
        cmd = ["dp", "--pt", "train", "input.json"]
        if checkpoint.exists():
            cmd += ["--restart", checkpoint.name]  # continues from its step to numb_steps
        print(f"dp --pt train: steps {done} → {steps} (log: {log})")
        run(cmd, work, log)
    train_wall_s = time.perf_counter() - t0
    run_record["wall_s"] += train_wall_s
    stamp.write_text(json.dumps(run_record))
    run(["dp", "--pt", "freeze", "-c", checkpoint.name, "-o", "frozen.pth"], work, log)
    run(["dp", "--pt", "test", "-m", "frozen.pth", "-s", str(data / "test"), "-d", "dp_test"], work, log)

    potential = DeepmdPotential.from_frozen(work / "frozen.pth")
    errors = evaluate_dft_errors(potential, parts.test, batch_size=4)
    print(errors.format_table("test frames (label method), frozen model through exprefine"))

    if args.smoke:
        return 0
    args.models.mkdir(parents=True, exist_ok=True)
    shipped = strip_optimizer(checkpoint, args.models / "base_deepmd.pt")
    shutil.copyfile(work / "frozen.pth", args.models / "base_deepmd.pth")
    summary_path = args.models / "base_deepmd.json"
    summary = {
        "model": shipped,
        "steps": trained_steps(work),
        "training_wall_s_this_run": round(train_wall_s, 1),
        "training_wall_s_total": round(run_record["wall_s"], 1),
        "threads": os.environ.get("OMP_NUM_THREADS"),
        "data": {"shards": [str(s.relative_to(args.dataset)) for s in shards], "n_frames": dataset.n_frames,
                 "n_train": parts.train.n_frames, "n_valid": parts.valid.n_frames, "n_test": parts.test.n_frames,
                 "split": {"scheme": "key_hash", "fractions": list(SPLIT_FRACTIONS), "seed": SPLIT_SEED}},
        "test_errors_vs_label_method": {
            "energy_rmse_meV_per_atom": errors.energy_rmse_meV_per_atom,
            "force_rmse_meV_per_A": errors.force_rmse_meV_per_A,
            "force_rmse_by_element_meV_per_A": errors.force_rmse_by_element_meV_per_A,
            "stress_rmse_meV_per_A3": errors.stress_rmse_meV_per_A3,
        },
        "versions": versions(),
    }
    summary_path.write_text(json.dumps(summary, indent=2))
    print(f"-> {args.models / 'base_deepmd.pt'}, {args.models / 'base_deepmd.pth'}, {summary_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
