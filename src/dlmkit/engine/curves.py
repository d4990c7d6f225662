"""``dlm plot``: training and validation curves of one or several runs, from their ``metrics.jsonl``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from dlmkit.errors import DlmError
from dlmkit.io import read_jsonl_log
from dlmkit.plotting import pyplot, readable_log_ticks, save_png

METRIC_TITLES = {"loss": "training loss", "val_loss": "validation loss", "lr": "learning rate", "tokens_per_s": "tokens / s"}


def read_metrics(run: str | Path) -> list[dict[str, Any]]:
    """The records of a run's ``metrics.jsonl`` (a run folder or the file itself), read by
    :func:`~dlmkit.io.read_jsonl_log`: a torn last line is skipped, a damaged line elsewhere is an error."""
    path = Path(run)
    path = path / "metrics.jsonl" if path.is_dir() else path
    if not path.is_file():
        raise DlmError(f"{run}: no metrics.jsonl (give a run folder or its metrics.jsonl)")
    records = [row for _, row in read_jsonl_log(path)]
    if not records:
        raise DlmError(f"{path}: no metrics recorded yet")
    return records


def _labels(runs: Sequence[str]) -> list[str]:
    """Run folder names, with their parent where two runs share a name."""
    paths = [Path(r).resolve() for r in runs]
    paths = [p.parent if p.is_file() else p for p in paths]
    names = [p.name for p in paths]
    return [f"{p.parent.name}/{p.name}" if names.count(p.name) > 1 else p.name for p in paths]


def plot_runs(runs: Sequence[str], out: str, *, metrics: Sequence[str] = ("loss", "val_loss"), log_y: bool = True,
              title: str | None = None) -> dict[str, Any]:
    """One panel per metric against step, one colour per run, the legend beside the panels."""
    if not runs:
        raise DlmError("give at least one run folder")
    if not str(out).lower().endswith(".png"):
        raise DlmError(f"--out {out}: the plot is written as a PNG (name it .png)")
    data = {label: read_metrics(run) for label, run in zip(_labels(runs), runs)}
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(metrics), figsize=(4.6 * len(metrics) + 2.2, 3.8), squeeze=False)
    drawn: dict[str, int] = {}
    for ax, metric in zip(axes[0], metrics):
        for i, (label, records) in enumerate(data.items()):
            pts = [(r["step"], r[metric]) for r in records if isinstance(r.get(metric), (int, float)) and "step" in r]
            if pts:
                ax.plot(*zip(*pts), "o-" if len(pts) < 30 else "-", ms=3, lw=1.4, color=f"C{i}", label=label)
                drawn[metric] = drawn.get(metric, 0) + len(pts)
        ax.set_title(METRIC_TITLES.get(metric, metric))
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if log_y and drawn.get(metric) and all(r.get(metric, 1) > 0 for rec in data.values() for r in rec if isinstance(r.get(metric), (int, float))):
            ax.set_yscale("log")
            readable_log_ticks(ax, "y")
        ax.grid(True, which="both", alpha=0.3)
    if not drawn:
        plt.close(fig)
        raise DlmError(f"none of the runs recorded {', '.join(metrics)}")
    legend: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, handle)
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0, 0, 1 - 2.0 / fig.get_figwidth(), 1))
    fig.legend(list(legend.values()), list(legend), loc="center left", bbox_to_anchor=(1 - 1.95 / fig.get_figwidth(), 0.5), fontsize=8, frameon=False)
    save_png(fig, out)
    return {"plot": str(out), "runs": list(runs), "metrics": list(metrics), "points": drawn}
