"""matplotlib, imported when a figure is drawn, and writing a figure atomically."""

from __future__ import annotations

__all__ = ["save_figure"]


def _plt():
    # the caller's backend is kept (inline in notebooks); `eqdyn analyze` selects Agg
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path) -> None:
    """Write `fig` to `path` (PNG at 120 dpi) through a temporary file, atomically."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, dpi=120, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    tmp.replace(path)
