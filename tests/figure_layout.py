"""A figure's text, checked as a reviewer would read it: no label overprints another, none is cut off.

Extents come from matplotlib's renderer after a full draw (constrained layout included), so they
are where the text lands on the saved page.
"""

from __future__ import annotations

from matplotlib.axis import Axis
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox


def drawn_texts(fig: Figure) -> list[tuple[Text, Bbox]]:
    """Every visible, non-empty Text the renderer draws, with its window extent.

    Tick labels count only for ticks drawn (those inside the view limits): matplotlib keeps spare
    tick objects at stale positions.
    """
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    tick_labels, drawn_tick_labels = set(), []
    for axis in fig.findobj(Axis):
        for tick in axis.get_major_ticks() + axis.get_minor_ticks():
            tick_labels.update((id(tick.label1), id(tick.label2)))
        for tick in axis._update_ticks():  # the ticks Axis.draw draws
            drawn_tick_labels += [tick.label1, tick.label2]
    texts = [t for t in fig.findobj(Text) if id(t) not in tick_labels] + drawn_tick_labels
    # Text.get_window_extent: an annotation's own would include its leader line
    return [
        (text, Text.get_window_extent(text, renderer))
        for text in texts
        if text.get_visible() and text.get_text().strip()
    ]


def assert_readable_layout(fig: Figure, min_gap_px: float = 0.0) -> int:
    """No two drawn texts overlap and every one lies inside the figure; returns how many there are."""
    placed = drawn_texts(fig)
    page = fig.bbox
    for text, box in placed:
        assert (
            box.x0 >= page.x0 - 0.5
            and box.y0 >= page.y0 - 0.5
            and box.x1 <= page.x1 + 0.5
            and box.y1 <= page.y1 + 0.5
        ), f"{text.get_text()!r} at {box.bounds} leaves the figure {page.bounds}"
    for i, (text_a, a) in enumerate(placed):
        grown = a.expanded(1.0, 1.0).padded(min_gap_px / 2)
        for text_b, b in placed[i + 1 :]:
            overlap_w = min(grown.x1, b.x1) - max(grown.x0, b.x0)
            overlap_h = min(grown.y1, b.y1) - max(grown.y0, b.y0)
            assert overlap_w <= 0 or overlap_h <= 0, (
                f"{text_a.get_text()!r} {a.bounds} overlaps {text_b.get_text()!r} {b.bounds}"
            )
    return len(placed)
