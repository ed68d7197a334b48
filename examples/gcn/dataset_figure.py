"""Size and composition of the g-C3N4 label data set (issue 5): one figure and one table.

    python examples/gcn/dataset_figure.py
    # → results/dataset_composition.png and results/dataset_composition.md

Reads only the comment lines of the shipped ``dataset/{seed,explore,wide}/*.extxyz.gz`` shards
(the recipe's choices stored with every frame), so it takes seconds. The train / valid / test
subset of each frame is the data set's own key-hash rule (``exprefine.data.key_hash_fraction``
with seed 0 and fractions 0.8 / 0.1 / 0.1, as in ``split.json``).
"""

from __future__ import annotations

import argparse
import gzip
import shlex
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
STAGES = ("seed", "explore", "wide")
SUBSETS = ("train", "valid", "test")
AA_PRIME = "AA'"


@dataclass(frozen=True)
class FrameInfo:
    """The recipe's choices for one labelled frame."""

    stage: str
    n_atoms: int
    stacking: str
    defect_kind: str
    spacing_A: float
    temperature_K: float  # rattle temperature (seed, wide) or MD temperature (explore)
    subset: str


def comment_fields(line: str) -> dict[str, str]:
    """key=value pairs of an extended-XYZ comment line (values may be quoted)."""
    out = {}
    for token in shlex.split(line):
        key, _, value = token.partition("=")
        out[key] = value
    return out


def subset_of(frame_key: str, fractions: tuple[float, float] = (0.8, 0.9)) -> str:
    from exprefine.data.dft import key_hash_fraction

    u = key_hash_fraction(frame_key, seed=0)
    return "train" if u < fractions[0] else "valid" if u < fractions[1] else "test"


def read_shard(path: Path, stage: str) -> list[FrameInfo]:
    """Every frame's FrameInfo from one gzipped extxyz shard, skipping the atom lines."""
    frames = []
    with gzip.open(path, "rt") as f:
        while True:
            head = f.readline()
            if not head.strip():
                break
            n_atoms = int(head)
            info = comment_fields(f.readline())
            for _ in range(n_atoms):
                f.readline()
            temperature = info.get("md_temperature_K") or info.get("rattle_temperature_K")
            if temperature is None or "frame_key" not in info:
                raise ValueError(f"{path}: a frame without md_temperature_K/rattle_temperature_K or frame_key")
            frames.append(FrameInfo(stage=stage, n_atoms=n_atoms, stacking=info.get("stacking", "?"),
                                    defect_kind=info.get("defect_kind", "?"),
                                    spacing_A=float(info["interlayer_spacing_A"]),
                                    temperature_K=float(temperature), subset=subset_of(info["frame_key"])))
    return frames


def read_dataset(root: Path) -> list[FrameInfo]:
    frames = []
    for stage in STAGES:
        shards = sorted((root / stage).glob("*.extxyz.gz"))
        if not shards:
            raise FileNotFoundError(f"no shards in {root / stage}")
        for shard in shards:
            frames += read_shard(shard, stage)
    return frames


def table(frames: list[FrameInfo]) -> list[str]:
    """Markdown: frames per stage and subset, stacking, defects; spacing and temperature ranges."""
    rows = ["| stage | frames | train / valid / test | atoms per frame | AB / AA' | pristine / central_N / "
            "bridging_N / mixed | d range (Å) | T range (K) |", "|" + "---|" * 8]
    for stage in (*STAGES, "all"):
        sel = [f for f in frames if stage in (f.stage, "all")]
        subsets = Counter(f.subset for f in sel)
        stack = Counter(f.stacking for f in sel)
        defects = Counter(f.defect_kind for f in sel)
        atoms = sorted({f.n_atoms for f in sel})
        d = np.array([f.spacing_A for f in sel])
        t = np.array([f.temperature_K for f in sel])
        rows.append(f"| {stage} | {len(sel)} | {' / '.join(str(subsets[s]) for s in SUBSETS)} | "
                    f"{', '.join(map(str, atoms))} | {stack['AB']} / {stack[AA_PRIME]} | "
                    f"{' / '.join(str(defects[k]) for k in ('pristine', 'central_N', 'bridging_N', 'mixed'))} | "
                    f"{d.min():.2f}–{d.max():.2f} | {t.min():.0f}–{t.max():.0f} |")
    return rows


def plot(path: Path, frames: list[FrameInfo]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.0, 3.6))
    d_bins = np.arange(2.8, 8.05, 0.1)
    t_bins = np.arange(50, 1101, 50)
    for stage in STAGES:
        sel = [f for f in frames if f.stage == stage]
        axes[0].hist([f.spacing_A for f in sel], bins=d_bins, histtype="step", lw=1.2, label=f"{stage} ({len(sel)})")
        axes[1].hist([f.temperature_K for f in sel], bins=t_bins, histtype="step", lw=1.2, label=stage)
    axes[0].axvspan(3.22, 3.25, color="0.7", lw=0, label="measured d")
    axes[0].set_xlabel("interlayer spacing d (Å)")
    axes[0].set_ylabel("frames")
    axes[0].legend(fontsize=7)
    axes[1].set_xlabel("rattle / MD temperature (K)")
    axes[1].legend(fontsize=7)
    kinds = ("pristine", "central_N", "bridging_N", "mixed")
    bottom = np.zeros(len(kinds))
    for stage in STAGES:
        counts = np.array([sum(f.stage == stage and f.defect_kind == k for f in frames) for k in kinds], dtype=float)
        axes[2].bar(kinds, counts, bottom=bottom, label=stage)
        bottom += counts
    axes[2].set_ylabel("frames")
    axes[2].set_title("carbon defects (pairs)", fontsize=9)
    axes[2].legend(fontsize=7)
    fig.suptitle(f"g-C3N4 label data set: {len(frames)} frames (GFN1-xTB without dispersion)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", type=Path, default=HERE / "dataset")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    try:
        frames = read_dataset(args.dataset)
    except (FileNotFoundError, ValueError) as exc:
        print(f"dataset_figure.py: {exc}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    plot(args.out / "dataset_composition.png", frames)
    rows = table(frames)
    (args.out / "dataset_composition.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
