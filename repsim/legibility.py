"""Whether a figure can be read on the page: its smallest text, as displayed, in points.

The book's pages show a figure at its own size, or shrunk to the width of the page's
text column when it is wider. A figure 16 inches wide with 8-point tick labels is shown
at less than half that size, and its labels at under 4 points. ``displayed_sizes`` gives
every visible text of a figure at the size a reader sees; ``check`` fails on any below
``MIN_POINTS``, naming it.
"""

from __future__ import annotations

from matplotlib.figure import Figure
from matplotlib.text import Text

PAGE_WIDTH_INCHES = 7.2  # the text column of a page: 720 CSS pixels at the figures' 100 dpi
MIN_POINTS = 8.0
TOLERANCE = 0.98  # a figure a few pixels wider than the page still passes (8 pt shown as 7.84)


def shown_width(fig: Figure) -> float:
    """The width in inches of ``fig`` as saved for the page: its own, or wider where text
    reaches beyond it (notebooks save figures with ``bbox_inches="tight"``)."""
    fig.draw_without_rendering()
    return max(fig.get_figwidth(), fig.get_tightbbox().width)


def scale(fig: Figure, page_width: float = PAGE_WIDTH_INCHES) -> float:
    """The factor by which the page shrinks ``fig`` (1 when it fits)."""
    return min(1.0, page_width / shown_width(fig))


def displayed_sizes(fig: Figure, page_width: float = PAGE_WIDTH_INCHES) -> list[tuple[float, str]]:
    """(size in points as displayed, the text) of every visible, non-empty text of
    ``fig``, smallest first."""
    factor = scale(fig, page_width)  # draws it: tick labels get their text when drawn
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and _shown(t)]
    return sorted((float(t.get_fontsize()) * factor, t.get_text()) for t in texts)


def _shown(text: Text) -> bool:
    # Tick labels of ticks that are not drawn (beyond the axis' limits) stay invisible text.
    axes = text.axes
    return axes is None or axes.get_visible()


def check(fig: Figure, what: str = "figure", page_width: float = PAGE_WIDTH_INCHES) -> Figure:
    """``fig`` itself when its smallest text is at least ``MIN_POINTS`` as displayed;
    else ValueError naming the text, its size and the figure's width."""
    sizes = displayed_sizes(fig, page_width)
    if sizes and sizes[0][0] < MIN_POINTS * TOLERANCE:
        size, text = sizes[0]
        raise ValueError(f"{what}: text {text!r} is {size:.1f} pt as displayed (figure {shown_width(fig):.1f} in "
                         f"wide on a {page_width} in page); at least {MIN_POINTS} pt is legible")
    return fig
