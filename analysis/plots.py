"""matplotlib without a display (Agg), and saving every figure as PNG and SVG."""
from __future__ import annotations

import os
from pathlib import Path


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    # Reproducible SVG ids, so that re-running the analysis does not change the files needlessly.
    matplotlib.rcParams["svg.hashsalt"] = "thrashlab"
    return plt


def integer_ticks(ax) -> None:
    from matplotlib.ticker import MaxNLocator
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def save(fig, out_dir: Path, stem: str) -> list[Path]:
    """``out_dir/stem.png`` and ``.svg``, each written to a temporary name and renamed."""
    import matplotlib.pyplot as plt
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext, kwargs in (("png", {"dpi": 110, "metadata": {"Software": None}}),
                        ("svg", {"metadata": {"Date": None}})):
        path = out_dir / f"{stem}.{ext}"
        tmp = out_dir / f".{stem}.{ext}.tmp"
        fig.savefig(tmp, format=ext, **kwargs)
        os.replace(tmp, path)
        paths.append(path)
    plt.close(fig)
    return paths
