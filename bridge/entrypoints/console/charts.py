"""The console's charts as inline SVG, drawn on the server: no script, nothing loaded.

- `usage_bar`: how much of a line's ceiling is used, as a bar (red beyond the ceiling).
- `usage_chart`: a line's cumulative use over time as a step line, with its ceiling.
- `bar_chart`: labelled horizontal bars (any table of label -> amount).

Each returns Markup: every text it places is escaped here."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal

from markupsafe import Markup, escape

from bridge.entrypoints.console.render import quantity

OK, WARN, BAD, TRACK, INK, MUTED = "#2e7d4f", "#b8860b", "#b3261e", "#e3e7ee", "#1f4e8c", "#5b6475"


def _colour(share: Decimal) -> str:
    if share > 1:
        return BAD
    return WARN if share >= Decimal("0.9") else OK


def usage_bar(share: Decimal | None, *, width: int = 160, height: int = 14) -> Markup:
    """A bar `width` wide, filled to `share` of it (capped at the end; red when over 1, amber
    from 90 %); a hatched grey bar for a line without a ceiling (None)."""
    if share is None:
        return Markup(
            f'<svg class="bar" width="{width}" height="{height}" role="img"'
            ' aria-label="no ceiling: usage is recorded">'
            f'<rect width="{width}" height="{height}" rx="3" fill="{TRACK}"/>'
            f'<text x="6" y="{height - 3}">no ceiling</text></svg>'
        )
    filled = max(Decimal(0), min(share, Decimal(1))) * width
    percent = (share * 100).quantize(Decimal(1))
    return Markup(
        f'<svg class="bar" width="{width}" height="{height}" role="img"'
        f' aria-label="{percent} % used">'
        f'<rect width="{width}" height="{height}" rx="3" fill="{TRACK}"/>'
        f'<rect width="{filled:.1f}" height="{height}" rx="3" fill="{_colour(share)}"/>'
        "</svg>"
    )


def _seconds(moment: datetime | date) -> float:
    if not isinstance(moment, datetime):
        moment = datetime.combine(moment, time(0), tzinfo=UTC)
    return moment.timestamp()


def usage_chart(
    points: Sequence[tuple[datetime, Decimal]],
    *,
    ceiling: Decimal | None,
    unit: str,
    start: datetime | date,
    end: datetime | date,
    width: int = 640,
    height: int = 180,
) -> Markup:
    """Cumulative use after each movement (`points`, time order) as a step line from `start`
    to `end`, the `ceiling` as a dashed line; axes labelled with dates and amounts in
    `unit`."""
    left, right, top, bottom = 70, 16, 14, 28
    plot_w, plot_h = width - left - right, height - top - bottom
    t0, t1 = _seconds(start), _seconds(end)
    if points:
        t0 = min(t0, _seconds(points[0][0]))
        t1 = max(t1, _seconds(points[-1][0]))
    t1 = max(t1, t0 + 86400)
    highest = max([Decimal(0), *(amount for _, amount in points)])
    top_value = max(highest, ceiling or Decimal(0)) * Decimal("1.08") or Decimal(1)

    def x(moment: datetime | date) -> float:
        return left + (_seconds(moment) - t0) / (t1 - t0) * plot_w

    def y(amount: Decimal) -> float:
        return top + plot_h - float(max(amount, Decimal(0)) / top_value) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{escape(unit)} used over time">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafbfd"'
        f' stroke="{TRACK}"/>',
    ]
    for amount in sorted({Decimal(0), highest, *([ceiling] if ceiling else [])}):
        parts.append(
            f'<text x="{left - 6}" y="{y(amount) + 4:.1f}" text-anchor="end">'
            f"{escape(quantity(amount))}</text>"
        )
    for moment in (t0, (t0 + t1) / 2, t1):
        day = datetime.fromtimestamp(moment, UTC).date().isoformat()
        anchor = "start" if moment == t0 else "end" if moment == t1 else "middle"
        xs = left + (moment - t0) / (t1 - t0) * plot_w
        parts.append(f'<text x="{xs:.1f}" y="{height - 8}" text-anchor="{anchor}">{day}</text>')
    if ceiling is not None:
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(ceiling):.1f}" y2="{y(ceiling):.1f}"'
            f' stroke="{BAD}" stroke-dasharray="5 4"/>'
            f'<text x="{left + plot_w - 4}" y="{y(ceiling) - 4:.1f}" text-anchor="end"'
            f' fill="{BAD}">authorised {escape(quantity(ceiling))} {escape(unit)}</text>'
        )
    path = [f"M{left:.1f},{y(Decimal(0)):.1f}"]
    for moment, amount in points:
        path.append(f"H{x(moment):.1f}V{y(amount):.1f}")
    path.append(f"H{left + plot_w:.1f}")
    parts.append(f'<path d="{"".join(path)}" fill="none" stroke="{INK}" stroke-width="2"/>')
    for moment, amount in points:
        parts.append(
            f'<circle cx="{x(moment):.1f}" cy="{y(amount):.1f}" r="3" fill="{INK}">'
            f"<title>{escape(datetime.fromtimestamp(_seconds(moment), UTC).isoformat())}:"
            f" {escape(quantity(amount))} {escape(unit)}</title></circle>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def bar_chart(
    rows: Sequence[tuple[str, Decimal]], *, unit: str = "", width: int = 640, bar: int = 18
) -> Markup:
    """Horizontal bars, one per (label, amount), scaled to the largest; amounts printed."""
    label_w, gap = 180, 6
    height = max(1, len(rows)) * (bar + gap) + gap
    largest = max([Decimal(0), *(amount for _, amount in rows)]) or Decimal(1)
    span = width - label_w - 110
    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="bar chart">'
    ]
    for index, (label, amount) in enumerate(rows):
        top = gap + index * (bar + gap)
        length = float(max(amount, Decimal(0)) / largest) * span
        parts.append(
            f'<text x="{label_w - 8}" y="{top + bar - 5}" text-anchor="end">{escape(label)}</text>'
            f'<rect x="{label_w}" y="{top}" width="{length:.1f}" height="{bar}" rx="2"'
            f' fill="{INK}"/>'
            f'<text x="{label_w + length + 6:.1f}" y="{top + bar - 5}">'
            f"{escape(quantity(amount))} {escape(unit)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
