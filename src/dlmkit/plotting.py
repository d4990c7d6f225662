"""Shared matplotlib helpers: a headless backend and log-scale ticks a reader can read.

Matplotlib labels a log axis spanning less than a decade with minor ticks such as
``2x10^0``; :func:`readable_log_ticks` labels such axes with plain numbers (``2``, ``5``,
``0.02``, ``1,000``) and adds labelled 2 and 5 ticks only where there are few decades.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlmkit.io import atomic_path


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig: Any, path: str | Path, **savefig: Any) -> None:
    """Write ``fig`` to ``path`` as a PNG (atomically: never half a file) and close it."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, **savefig)
    import matplotlib.pyplot as plt

    plt.close(fig)


def plain_number(value: float, _pos: Any = None) -> str:
    """A tick label without powers of ten: 2, 0.05, 1,000; scientific only beyond 1e6 or below 1e-4."""
    if value == 0:
        return "0"
    if abs(value) >= 1e6 or abs(value) < 1e-4:
        return f"{value:.0e}".replace("e+0", "e").replace("e-0", "e-")
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:g}"


def readable_log_ticks(ax: Any, axes: str = "y") -> None:
    """Plain-number labels on the log-scaled ``axes`` ("x", "y" or "xy") of ``ax``.

    Call after plotting (the view limits decide whether 2 and 5 get labelled ticks).
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.autoscale_view()
    for name in axes:
        axis = ax.xaxis if name == "x" else ax.yaxis
        if axis.get_scale() != "log":
            continue
        lo, hi = sorted(axis.get_view_interval())
        axis.set_major_locator(LogLocator(base=10))
        axis.set_major_formatter(FuncFormatter(plain_number))
        few_decades = lo > 0 and hi / lo < 100
        axis.set_minor_locator(LogLocator(base=10, subs=(2.0, 5.0) if few_decades else (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0)))
        axis.set_minor_formatter(FuncFormatter(plain_number) if few_decades else NullFormatter())
