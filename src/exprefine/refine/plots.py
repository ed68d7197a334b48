"""PNG figures of a run: each target's models against its measurement, and the update history.

The measurement is drawn at its own points, with σ as error bars where the data give one; the
history marks the steps the update rule rejected and the samplings that blew up and were
rolled back. matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from .curves import TargetCurve, target_curves

if TYPE_CHECKING:  # pragma: no cover
    from .records import Evaluation, UpdateRecord
    from .targets import Target

#: colour of each model label (others cycle through C0, C3, C2, ...)
_COLOURS = {"before": "C0", "model": "C0", "after": "C3"}
#: at most this many parameters in the history's parameter panel (those that moved most)
MAX_PLOTTED_PARAMETERS = 8


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colour(label: str, k: int) -> str:
    return _COLOURS.get(label, f"C{(k + 2) % 10}")


def _log_if_wide(ax, values: Sequence[float]) -> None:
    """A log y axis when the values span more than a factor 20 (else linear: readable tick labels)."""
    finite = [v for v in values if v == v and v > 0]
    if finite and max(finite) / min(finite) > 20.0:
        ax.set_yscale("log")


def plot_history(history: Sequence["UpdateRecord"], path: str | Path, final_loss: float | None = None,
                 final_parameters: dict[str, float] | None = None) -> None:
    """Loss, N_eff/N, per-target RMSE and parameters against the update number (as in ``log.csv``).

    Rejected steps (the update rule kept the previous parameters) are red crosses on the loss;
    blown-up samplings that were rolled back are dashed red lines; new trajectories grey lines.
    ``final_loss`` (the independent check run's) and ``final_parameters`` (after the last step) are
    drawn one update after the last row, as open squares.
    """
    if not history:
        return
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    updates = np.array([r.update for r in history])
    end = int(updates[-1]) + 1
    parameters = _moved_parameters(history, final_parameters)
    n_panels = 4 if parameters else 3
    fig, axes = plt.subplots(n_panels, 1, figsize=(6.5, 2.2 * n_panels + 0.6), sharex=True)
    loss = np.array([r.loss for r in history])
    axes[0].plot(updates, loss, "o-", ms=3, color="k", label="loss (reweighted)")
    if final_loss is not None:
        axes[0].plot([end], [final_loss], "s", ms=6, mfc="none", color="k", label="final check run")
    rejected = np.array([not r.accepted for r in history])
    if rejected.any():
        axes[0].plot(updates[rejected], loss[rejected], "x", color="C3", ms=9, mew=2, label="step rejected")
    rolled = [r.update for r in history if r.rollbacks]
    for k, u in enumerate(rolled):
        for ax in axes:
            ax.axvline(u - 0.5, color="C3", ls="--", lw=1.0, label="blow-up rolled back" if k == 0 and ax is axes[0]
                       else None)
    _log_if_wide(axes[0], list(loss) + ([final_loss] if final_loss is not None else []))
    axes[0].set_ylabel("loss")
    axes[0].legend(fontsize=7, loc="upper right")
    axes[1].plot(updates, [r.ess_fraction for r in history], "o-", ms=3, color="C1")
    for u in (r.update for r in history if r.resampled):
        axes[1].axvline(u, color="0.85", lw=0.8, zorder=0)
    axes[1].set_ylabel("N_eff / N")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_title("grey lines: new trajectory sampled", fontsize=8)
    # targets have different units (a g(r) next to a pressure in bar): each RMSE relative to its first value
    ratios: list[float] = []
    for name, first in history[0].target_rmse.items():
        scale = first if first > 0 else 1.0
        values = [r.target_rmse.get(name, float("nan")) / scale for r in history]
        ratios += values
        axes[2].plot(updates, values, "o-", ms=3, label=f"{name} (first {first:.4g})")
    _log_if_wide(axes[2], ratios)
    axes[2].set_ylabel("RMSE / first RMSE")
    axes[2].legend(fontsize=7)
    if parameters:
        for k, (name, change) in enumerate(parameters.items()):
            colour = f"C{k % 10}"
            axes[3].plot(updates, change[: len(updates)], "o-", ms=3, color=colour, label=name)
            if len(change) > len(updates):
                axes[3].plot([updates[-1], end], change[len(updates) - 1:], ":", color=colour)
                axes[3].plot([end], change[-1:], "s", ms=6, mfc="none", color=colour)
        axes[3].axhline(0.0, color="0.6", lw=0.8)
        axes[3].set_ylabel("change from start (%)")
        axes[3].legend(fontsize=7, ncol=2)
    axes[-1].set_xlabel("update (as in log.csv; each row is before its step)")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(str(path), dpi=120)
    plt.close(fig)


def _moved_parameters(history: Sequence["UpdateRecord"],
                      final: dict[str, float] | None = None) -> dict[str, np.ndarray]:
    """Relative change (%) of the parameters that start away from zero (with ``final`` appended), the most
    moved first."""
    start = history[0].parameters
    names = [n for n, v in start.items() if abs(v) > 1e-12]
    rows = [r.parameters for r in history] + ([final] if final else [])
    changes = {n: np.array([100.0 * (row.get(n, np.nan) / start[n] - 1.0) for row in rows]) for n in names}
    ranked = sorted(changes, key=lambda n: -float(np.nanmax(np.abs(changes[n]))))
    return {n: changes[n] for n in ranked[:MAX_PLOTTED_PARAMETERS]}


def plot_curves(curves: Sequence[TargetCurve], out_dir: str | Path, prefix: str = "target_") -> list[Path]:
    """One PNG per target (``{prefix}{name}.png`` in ``out_dir``): measurement and models."""
    plt = _pyplot()
    paths = []
    for curve in curves:
        if curve.is_scalar:
            fig = _scalar_figure(plt, curve)
        else:
            fig = _curve_figure(plt, curve)
        path = Path(out_dir) / f"{prefix}{curve.name}.png"
        fig.savefig(str(path), dpi=120)
        plt.close(fig)
        paths.append(path)
    return paths


def _scalar_figure(plt, curve: TargetCurve):
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    labels = ["measured"] + [m.label for m in curve.models]
    values = [curve.measured_y[0]] + [m.values[0] for m in curve.models]
    errors = [curve.measured_sigma[0] if curve.measured_sigma else 0.0] + [m.standard_errors[0] for m in curve.models]
    errors = [e if e == e else 0.0 for e in errors]  # NaN (too few frames): no bar
    colours = ["k"] + [_colour(m.label, k) for k, m in enumerate(curve.models)]
    ax.bar(labels, values, yerr=errors, capsize=4, color=colours)
    lo = min(v - e for v, e in zip(values, errors))
    hi = max(v + e for v, e in zip(values, errors))
    pad = 0.15 * (hi - lo) if hi > lo else abs(hi) * 0.1 + 1e-9
    if lo > 0 and (hi - lo) < 0.5 * hi:  # values far from zero: zoom in so that differences show
        ax.set_ylim(lo - pad, hi + pad)
    for k, (v, e) in enumerate(zip(values, errors)):
        ax.annotate(f"{v:.4g}" + (f" ± {e:.2g}" if e else ""), (k, v + e), ha="center", va="bottom", fontsize=8,
                    xytext=(0, 3), textcoords="offset points")
    ax.set_ylabel(f"{curve.quantity} ({curve.unit})")
    ax.set_title(curve.name)
    fig.tight_layout()
    return fig


def _curve_figure(plt, curve: TargetCurve):
    fig, (ax, res) = plt.subplots(2, 1, figsize=(6.5, 5.0), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    grid = np.asarray(curve.grid)
    x = np.asarray(curve.measured_x)
    y = np.asarray(curve.measured_y)
    sigma = None if curve.measured_sigma is None else np.asarray(curve.measured_sigma)
    shown = (x >= grid.min()) & (x <= grid.max())
    n_shown = int(shown.sum())
    counted = f"{n_shown} points" if n_shown == len(x) else f"{n_shown} of {len(x)} points in view"
    label = f"measured ({counted}" + (", ±σ)" if sigma is not None else ")")
    ms = 3.5 if n_shown <= 120 else 2.0
    if sigma is not None:
        ax.errorbar(x[shown], y[shown], yerr=sigma[shown], fmt="o", ms=ms, color="k", ecolor="0.4", elinewidth=0.8,
                    capsize=0, label=label, zorder=3)
    else:
        ax.plot(x[shown], y[shown], "o", ms=ms, color="k", mfc="none" if n_shown <= 120 else "k", label=label, zorder=3)
    for k, model in enumerate(curve.models):
        colour = _colour(model.label, k)
        values = np.asarray(model.values)
        ax.plot(grid, values, "-", color=colour, lw=1.4, label=f"{model.label} (RMSE {model.rmse:.4g})", zorder=2)
        se = np.asarray(model.standard_errors)
        if np.isfinite(se).any():
            ax.fill_between(grid, values - se, values + se, color=colour, alpha=0.25, lw=0, zorder=1)
    if curve.fit_range is not None:
        for a in (ax, res):
            a.axvspan(curve.fit_range[0], curve.fit_range[1], color="0.93", zorder=0)
    ax.set_ylabel(f"{curve.quantity}" + ("" if curve.unit in ("1", "") else f" ({curve.unit})"))
    ax.set_title(f"{curve.name} (shaded: fit range)")
    ax.legend(fontsize=8)
    # residuals at the measured points inside the fit range: what the loss sees, point by point
    inside = shown if curve.fit_range is None else shown & (x >= curve.fit_range[0]) & (x <= curve.fit_range[1])
    if sigma is not None:
        res.fill_between(x[inside], -sigma[inside], sigma[inside], color="0.75", lw=0, label="±σ", zorder=1)
    for k, model in enumerate(curve.models):
        model_at_data = np.interp(x[inside], grid, np.asarray(model.values))
        res.plot(x[inside], model_at_data - y[inside], "-", color=_colour(model.label, k), lw=1.0, zorder=2)
    res.axhline(0.0, color="k", lw=0.8)
    res.set_ylabel("model − data")
    res.set_xlabel(curve.grid_label or "")
    res.set_xlim(grid.min(), grid.max())
    fig.tight_layout()
    return fig


def plot_targets(
    targets: Sequence["Target"],
    before: "Evaluation",
    after: "Evaluation | None",
    out_dir: str | Path,
    before_label: str = "before",
) -> list[Path]:
    """One PNG per target: measurement at its own points (σ as error bars), model before and after;
    fit range shaded; residuals below.

    ``before_label`` names the first model curve ("before" in a refinement; e.g. "model" when a
    single evaluation is plotted with ``after=None``).
    """
    evaluations = [(before_label, before)] + ([("after", after)] if after is not None else [])
    return plot_curves(target_curves(targets, evaluations), out_dir)
