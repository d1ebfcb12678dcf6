"""Charts as inline SVG, drawn on the server: no script and nothing loaded from elsewhere, so a
page shows them under the console's content security policy and a report file shows them
standalone. Pure string building; every text is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

# Colours that stay apart for the common colour-vision deficiencies (Okabe-Ito).
PALETTE = ("#0072B2", "#E69F00", "#D55E00", "#009E73", "#CC79A7", "#56B4E9")


def _nice_top(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `value` (at least 1)."""
    top = 1
    while True:
        for step in (1, 2, 5):
            if top * step >= value:
                return top * step
        top *= 10


def grouped_bars(
    groups: Sequence[tuple[str, Sequence[tuple[str, int]]]],
    *,
    title: str,
    width: int = 760,
    height: int = 280,
) -> str:
    """A grouped bar chart: one group per (label, [(series, count), ...]), series in the
    same order in every group, a legend, a value axis from 0, each bar's count in its
    tooltip (`<title>`). An empty `groups` draws the axes and says there is nothing."""
    series = [name for name, _ in groups[0][1]] if groups else []
    left, right, top, bottom = 44, 12, 34, 46
    plot_w, plot_h = width - left - right, height - top - bottom
    highest = max((n for _, bars in groups for _, n in bars), default=0)
    ceiling = _nice_top(highest)
    out = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}"'
        f' width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in range(5):
        figure = ceiling * tick / 4
        y = top + plot_h - plot_h * tick / 4
        label = f"{figure:g}" if figure != int(figure) else f"{int(figure)}"
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}"'
            f' stroke="#d8dde6" stroke-width="1"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
        )
    if not groups:
        out.append(
            f'<text x="{left + plot_w / 2:.1f}" y="{top + plot_h / 2:.1f}"'
            ' text-anchor="middle">nothing in this range</text>'
        )
    slot = plot_w / max(1, len(groups))
    bar = max(2.0, min(28.0, slot * 0.8 / max(1, len(series))))
    for index, (label, bars) in enumerate(groups):
        x0 = left + slot * index + (slot - bar * len(bars)) / 2
        for number, (name, count) in enumerate(bars):
            h = plot_h * count / ceiling
            x = x0 + bar * number
            out.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - h:.1f}" width="{bar - 1:.1f}"'
                f' height="{h:.1f}" fill="{PALETTE[number % len(PALETTE)]}">'
                f"<title>{escape(label)}: {escape(name)} {count}</title></rect>"
            )
        # Labels thin out when periods are many (36 months fit on one page).
        every = max(1, len(groups) // 12)
        if index % every == 0:
            out.append(
                f'<text x="{left + slot * index + slot / 2:.1f}" y="{top + plot_h + 16}"'
                f' text-anchor="middle">{escape(label)}</text>'
            )
    x = left
    for number, name in enumerate(series):
        out.append(
            f'<rect x="{x}" y="10" width="12" height="12"'
            f' fill="{PALETTE[number % len(PALETTE)]}"/>'
            f'<text x="{x + 16}" y="20">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    out.append(
        f'<line x1="{left}" y1="{top + plot_h}" x2="{width - right}" y2="{top + plot_h}"'
        ' stroke="#5b6475" stroke-width="1"/>'
    )
    out.append("</svg>")
    return "".join(out)
