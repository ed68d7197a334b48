"""PNG figures of a refinement: each target before/after against its measurement, loss and ESS history."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # pragma: no cover
    from .records import Evaluation, UpdateRecord
    from .targets import Target


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_history(history: Sequence["UpdateRecord"], path: str | Path) -> None:
    """Loss, N_eff/N and per-target RMSE against the update number."""
    if not history:
        return
    plt = _pyplot()
    updates = [r.update for r in history]
    fig, axes = plt.subplots(3, 1, figsize=(6.0, 7.5), sharex=True)
    axes[0].semilogy(updates, [r.loss for r in history], "o-", ms=3)
    axes[0].set_ylabel("loss")
    axes[1].plot(updates, [r.ess_fraction for r in history], "o-", ms=3, color="C1")
    resampled = [r.update for r in history if r.resampled]
    for u in resampled:
        axes[1].axvline(u, color="0.85", lw=0.8, zorder=0)
    axes[1].set_ylabel("N_eff / N")
    axes[1].set_ylim(0, 1.05)
    # targets have different units (a g(r) next to a pressure in bar): each RMSE relative to its first value
    for name, first in history[0].target_rmse.items():
        scale = first if first > 0 else 1.0
        axes[2].semilogy(updates, [r.target_rmse.get(name, float("nan")) / scale for r in history], "o-", ms=3,
                         label=f"{name} (first {first:.4g})")
    axes[2].set_ylabel("RMSE / first RMSE (reweighted)")
    axes[2].set_xlabel("update")
    axes[2].legend(fontsize=8)
    axes[1].set_title("grey lines: new trajectory sampled", fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path), dpi=120)
    plt.close(fig)


def plot_targets(
    targets: Sequence["Target"],
    before: "Evaluation",
    after: "Evaluation | None",
    out_dir: str | Path,
    before_label: str = "before",
) -> list[Path]:
    """One PNG per target: measurement, model before and after refinement; fit range shaded.

    ``before_label`` names the first model curve ("before" in a refinement; e.g. "model" when a
    single evaluation is plotted with ``after=None``).
    """
    plt = _pyplot()
    paths = []
    for k, target in enumerate(targets):
        grid = target.observable.grid()
        fig, ax = plt.subplots(figsize=(6.0, 4.0))
        if grid is None:
            labels = ["measured", before_label] + (["after"] if after is not None else [])
            values = [float(target.reference), float(before.predictions[k])]
            if after is not None:
                values.append(float(after.predictions[k]))
            errors = [0.0] + [float(ev.standard_errors.get(target.name, float("nan")))
                              for ev in ([before, after] if after is not None else [before])]
            errors = [e if e == e else 0.0 for e in errors]  # NaN (too few frames): no bar
            ax.bar(labels, values, yerr=errors, capsize=4, color=["k", "C0", "C3"][: len(values)])
            ax.set_ylabel(f"{target.observable.name} ({target.observable.unit})")
        else:
            x = grid.detach().cpu().numpy()
            ref = target.reference.cpu().numpy()
            ax.plot(x, ref, "k.", ms=3, label="measured")
            ax.plot(x, before.predictions[k].cpu().numpy(), "C0-",
                    label=f"{before_label} (RMSE {before.rmse[target.name]:.4f})")
            if after is not None:
                ax.plot(x, after.predictions[k].cpu().numpy(), "C3-",
                        label=f"after (RMSE {after.rmse[target.name]:.4f})")
            if target.mask is not None:
                m = target.mask.cpu().numpy()
                ax.axvspan(x[m].min(), x[m].max(), color="0.93", zorder=0, label="fit range")
            ax.set_xlabel(target.observable.grid_label())
            ax.set_ylabel(f"{target.observable.name}")
            ax.legend(fontsize=8)
        ax.set_title(target.name)
        fig.tight_layout()
        path = Path(out_dir) / f"target_{target.name}.png"
        fig.savefig(str(path), dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths
