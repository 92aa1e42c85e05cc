"""matplotlib without a display (Agg), and saving every figure as PNG and SVG.

The SVG carries one invisible hover target per plotted data point, on top of
the figure, whose ``<title>`` names the series and gives the point's values:
a browser shows it as a tooltip when the pointer rests on the point.
"""
from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from xml.sax.saxutils import escape

HOVER_RADIUS_PT = 4.0    # about the size of the drawn markers


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
        if ext == "svg":
            buffer = io.StringIO()
            fig.savefig(buffer, format=ext, **kwargs)
            tmp.write_text(with_hover_targets(buffer.getvalue(), fig), encoding="utf-8")
        else:
            fig.savefig(tmp, format=ext, **kwargs)
        os.replace(tmp, path)
        paths.append(path)
    plt.close(fig)
    return paths


def with_hover_targets(svg: str, fig) -> str:
    """The SVG with a transparent circle titled with its values over every data point."""
    circles = [f'<circle cx="{x:.2f}" cy="{y:.2f}" r="{HOVER_RADIUS_PT:g}" fill="#000" fill-opacity="0">'
               f"<title>{escape(title)}</title></circle>" for x, y, title in hover_points(fig)]
    head, end, tail = svg.rpartition("</svg>")
    return head + '<g id="hover-points">\n' + "\n".join(circles) + "\n</g>\n" + end + tail


def hover_points(fig) -> list[tuple[float, float, str]]:
    """Each data point of the lines and scatters drawn in data coordinates and shown inside
    their axes: its position in the SVG (points, y downwards) and its title."""
    import numpy as np
    from matplotlib.transforms import Affine2D
    # Layout is in inches, so the SVG's coordinates (72 per inch) follow from any dpi.
    to_svg = fig.dpi_scale_trans.inverted() + Affine2D().scale(72, -72).translate(0, fig.get_figheight() * 72)
    out = []
    for ax in fig.axes:
        inside = ax.bbox.padded(1)
        xname = axis_name(ax, "x")
        yname = axis_name(ax, "y")
        # axhline/axvline and spans are not in data coordinates: not data points
        series = [(line, line.get_transform(), np.column_stack([line.get_xdata(), line.get_ydata()]))
                  for line in ax.lines if line.get_transform() is ax.transData]
        series += [(c, c.get_offset_transform(), np.asarray(c.get_offsets()))
                   for c in ax.collections if c.get_offset_transform() is ax.transData]
        for artist, transform, data in series:
            if not len(data):
                continue
            name = series_name(artist)
            points = data.astype(float)
            for (x, y), shown in zip(points, transform.transform(points)):
                if not np.isfinite(shown).all() or not inside.contains(*shown):
                    continue
                sx, sy = to_svg.transform(shown)
                values = [f"{xname} = {number(x)}", f"{yname} = {number(y)}"]
                out.append((sx, sy, "\n".join([name, *values] if name else values)))
    return out


def series_name(artist) -> str:
    """The artist's label; a label starting with '_' stays out of the legend but still names
    the series here, except matplotlib's own placeholders ('_child3')."""
    label = artist.get_label() or ""
    return "" if re.fullmatch(r"_child\d+", label) else label.lstrip("_")


def axis_name(ax, axis: str) -> str:
    """What an axis shows: the first line of its label (a shared axis's if its own is hidden),
    without an explanation in parentheses; for y without a label, what the axes' title
    names after its last colon."""
    siblings = (ax.get_shared_x_axes() if axis == "x" else ax.get_shared_y_axes()).get_siblings(ax)
    labels = [a.get_xlabel() if axis == "x" else a.get_ylabel() for a in [ax, *siblings]]
    label = next((lb for lb in labels if lb), "")
    if not label:
        titled = ax.get_title().rpartition(": ")[2] if axis == "y" else ""
        return titled or axis
    first = label.splitlines()[0]
    head, paren, rest = first.partition(" (")
    return head if paren and (")" not in rest or re.search(r"[:;,]", rest)) else first


def number(v: float) -> str:
    if math.isfinite(v) and v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:,.0f}" if abs(v) >= 1e4 else f"{v:.4g}"
