"""The per-update run log: a CSV for spreadsheets and a JSON-lines file with everything."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from .records import UpdateRecord


class RunLog:
    """Appends one row per update to ``log.csv`` and ``log.jsonl`` in a run directory."""

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.run_dir / "log.csv"
        self.jsonl_path = self.run_dir / "log.jsonl"

    def reset(self) -> None:
        for path in (self.csv_path, self.jsonl_path):
            path.unlink(missing_ok=True)

    def truncate(self, n_updates: int) -> None:
        """Keep only the rows of updates < ``n_updates`` (after a resume from a checkpoint)."""
        if not self.jsonl_path.exists():
            return
        rows = [json.loads(line) for line in self.jsonl_path.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if r["update"] < n_updates]
        self.reset()
        for r in rows:
            self.append(UpdateRecord(**r))

    @staticmethod
    def _flat(record: UpdateRecord) -> dict[str, object]:
        row: dict[str, object] = {
            "update": record.update,
            "loss": record.loss,
            "ess_fraction": record.ess_fraction,
            "resampled": int(record.resampled),
            "learning_rate": record.learning_rate,
            "wall_time_s": record.wall_time_s,
            "n_frames": record.n_frames,
            "accepted": int(record.accepted),
            "damping": record.damping,
            "step_spread_kT": record.step_spread_kT,
            "dft_loss": record.dft_loss,
            "rollbacks": record.rollbacks,
            "gradient_norm": record.gradient_norm,
        }
        if record.prior_loss is not None:
            row["prior_loss"] = record.prior_loss
        if record.curvature_eigenvalues:
            row["curvature_min"] = record.curvature_eigenvalues[0]
            row["curvature_max"] = record.curvature_eigenvalues[-1]
        row.update({f"loss_point_{k}": v for k, v in record.point_loss.items()})
        row.update({f"ess_fraction_{k}": v for k, v in record.point_ess_fraction.items()})
        if record.point_loss:
            row["resampled_points"] = " ".join(record.resampled_points)
        row.update({f"loss_{k}": v for k, v in record.target_loss.items()})
        row.update({f"rmse_{k}": v for k, v in record.target_rmse.items()})
        row.update(record.parameters)
        return row

    def append(self, record: UpdateRecord) -> None:
        """One more row; when it has columns the CSV's header lacks (a run resumed by a newer version,
        a column that appears later), the CSV is rewritten from the JSON lines with every column."""
        row = self._flat(record)
        with self.jsonl_path.open("a") as fh:
            fh.write(json.dumps(asdict(record)) + "\n")
        header = None
        if self.csv_path.exists():
            with self.csv_path.open(newline="") as fh:
                header = next(csv.reader(fh), None)
        if header is not None and header != list(row):
            self._rewrite_csv()
            return
        with self.csv_path.open("a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(row))
            if header is None:
                writer.writeheader()
            writer.writerow(row)

    def _rewrite_csv(self) -> None:
        rows = [self._flat(UpdateRecord(**json.loads(line)))
                for line in self.jsonl_path.read_text().splitlines() if line.strip()]
        columns: dict[str, None] = {}
        for row in rows:
            columns.update(dict.fromkeys(row))
        with self.csv_path.open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(columns), restval="")
            writer.writeheader()
            writer.writerows(rows)


def update_line(record: UpdateRecord, n_updates: int, elapsed_s: float) -> str:
    """One plain line for an update (for logs and pipes, where progress bars leave carriage returns)."""
    parts = [f"update {record.update} [{record.update + 1}/{n_updates}]", f"loss {record.loss:.5g}",
             f"N_eff/N {record.ess_fraction:.2f}"]
    if record.point_ess_fraction:
        parts[-1] = "N_eff/N " + " ".join(f"{k} {v:.2f}" for k, v in record.point_ess_fraction.items())
        parts.append(f"resampled {' '.join(record.resampled_points)}" if record.resampled_points else "reweighted")
    else:
        parts.append("resampled" if record.resampled else "reweighted")
    if not record.accepted:
        parts.append("step rejected")
    if record.rollbacks:
        parts.append(f"{record.rollbacks} blow-up{'s' if record.rollbacks > 1 else ''} rolled back")
    parts.append(f"elapsed {elapsed_s:.0f} s")
    return "  ".join(parts)
