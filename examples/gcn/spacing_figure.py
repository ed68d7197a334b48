"""Interlayer spacing of g-C3N4 at 300 K and 1 bar: models vs the truth vs the measurement (issue 5).

    python examples/gcn/spacing_figure.py
    # → results/spacing.png and results/spacing.md

Collects what the other scripts wrote: every ``results/transferability/<tag>/transferability.json``
(NPT spacing of a model per cell size, mean ± block SE), the truth-quality model's NPT spacing
(``data/synthetic_experiment.json``), and the measured 3.22–3.25 Å (XRD (002) peak,
``data/README.md``). Nothing is recomputed.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from common import MEASURED_SPACING_A

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class SpacingPoint:
    """One model's mean interlayer spacing (Å) ± block standard error on one cell."""

    model: str
    cell: str
    n_atoms: int
    spacing_A: float
    spacing_se_A: float


def read_points(transferability_dir: Path, synthetic_json: Path, tags: list[str] | None) -> list[SpacingPoint]:
    points = []
    folders = [transferability_dir / t for t in tags] if tags else sorted(transferability_dir.iterdir())
    for folder in folders:
        path = folder / "transferability.json"
        if not path.exists():
            if tags:
                raise FileNotFoundError(f"no transferability.json in {folder}")
            continue
        for s in json.loads(path.read_text())["sizes"]:
            points.append(SpacingPoint(folder.name, s["size"], s["n_atoms"], s["spacing_A"], s["spacing_se_A"]))
    if synthetic_json.exists():
        synthetic = json.loads(synthetic_json.read_text())
        cell = synthetic["truth_cell"]
        points.append(SpacingPoint("truth (base + D3)", "synthetic cell", synthetic["n_atoms"], cell["spacing_A"],
                                   cell["spacing_se_A"]))
    return points


def plot(path: Path, points: list[SpacingPoint]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(p.model for p in points))
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    ax.axvspan(*MEASURED_SPACING_A, color="0.75", lw=0, label="measured (XRD)")
    for k, model in enumerate(models):
        sel = [p for p in points if p.model == model]
        ax.errorbar([p.spacing_A for p in sel], [k + 0.12 * (j - (len(sel) - 1) / 2) for j in range(len(sel))],
                    xerr=[2 * p.spacing_se_A for p in sel], fmt="o", ms=4, capsize=2)
        for j, p in enumerate(sel):
            ax.annotate(f"{p.cell} ({p.n_atoms})", (p.spacing_A, k + 0.12 * (j - (len(sel) - 1) / 2)),
                        xytext=(5, 0), textcoords="offset points", fontsize=6, va="center")
    ax.set_yticks(range(len(models)), models, fontsize=8)
    ax.set_ylim(-0.6, len(models) - 0.4)
    ax.set_xlabel("interlayer spacing d at 300 K, 1 bar (Å; bars: ±2 SE)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tags", nargs="*", default=None, help="transferability runs to show (default: all)")
    p.add_argument("--transferability", type=Path, default=HERE / "results" / "transferability")
    p.add_argument("--synthetic-json", type=Path, default=HERE / "data" / "synthetic_experiment.json")
    p.add_argument("--out", type=Path, default=HERE / "results")
    args = p.parse_args(argv)
    try:
        points = read_points(args.transferability, args.synthetic_json, args.tags)
    except FileNotFoundError as exc:
        print(f"spacing_figure.py: {exc}", file=sys.stderr)
        return 1
    if not points:
        print(f"spacing_figure.py: no spacings found under {args.transferability}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    plot(args.out / "spacing.png", points)
    rows = ["| model | cell | atoms | d (Å) |", "|---|---|---|---|"]
    rows += [f"| {p.model} | {p.cell} | {p.n_atoms} | {p.spacing_A:.3f} ± {p.spacing_se_A:.3f} |" for p in points]
    rows.append(f"| measured (XRD (002)) | | | {MEASURED_SPACING_A[0]:.2f}–{MEASURED_SPACING_A[1]:.2f} |")
    (args.out / "spacing.md").write_text("\n".join(rows) + "\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
