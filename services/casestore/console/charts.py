"""Deliveries per hour as an SVG bar chart, rendered on the server.

Readable without colour: each outcome has its own pattern (solid, hatched, dotted) and a
labelled legend; every bar has a title with its counts, and the chart an accessible summary.
"""

from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 480, 160
LEFT, RIGHT, TOP, BOTTOM = 34, 6, 12, 26
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
# (outcome, label, fill) in stacking order, bottom first.
OUTCOMES = (("succeeded", "succeeded", "solid"), ("failed", "failed", "hatch"),
            ("waiting", "waiting", "dots"))


@dataclass(frozen=True, slots=True)
class Bucket:
    """One hour's deliveries by outcome."""

    hour: datetime
    succeeded: int = 0
    failed: int = 0
    waiting: int = 0

    @property
    def total(self) -> int:
        return self.succeeded + self.failed + self.waiting


def _defs(prefix: str) -> str:
    return (
        "<defs>"
        f'<pattern id="{prefix}-hatch" width="6" height="6" patternUnits="userSpaceOnUse"'
        ' patternTransform="rotate(45)"><rect width="6" height="6" class="chart-failed-bg"/>'
        '<line x1="0" y1="0" x2="0" y2="6" class="chart-failed-line" stroke-width="3"/>'
        "</pattern>"
        f'<pattern id="{prefix}-dots" width="5" height="5" patternUnits="userSpaceOnUse">'
        '<rect width="5" height="5" class="chart-waiting-bg"/>'
        '<circle cx="2.5" cy="2.5" r="1.3" class="chart-waiting-dot"/></pattern>'
        "</defs>")


def _fill(prefix: str, kind: str) -> str:
    return 'class="chart-succeeded"' if kind == "solid" else f'fill="url(#{prefix}-{kind})"'


def _bar(prefix: str, x: float, width: float, bucket: Bucket, scale: float) -> str:
    hour = bucket.hour.strftime("%H:00")
    counts = ", ".join(f"{getattr(bucket, name)} {label}" for name, label, _ in OUTCOMES)
    parts = [f"<g><title>{escape(hour)} UTC: {escape(counts)}</title>"]
    y = TOP + PLOT_H
    for name, _, kind in OUTCOMES:
        height = getattr(bucket, name) * scale
        if height:
            y -= height
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                         f'height="{height:.1f}" {_fill(prefix, kind)} class="chart-bar"/>')
    if bucket.total == 0:  # an empty hour is still there to hover and read
        parts.append(f'<rect x="{x:.1f}" y="{TOP}" width="{width:.1f}" height="{PLOT_H}" '
                     'fill="transparent"/>')
    parts.append("</g>")
    return "".join(parts)


def _axes(buckets: list[Bucket], top: int) -> str:
    parts = [f'<line x1="{LEFT}" y1="{TOP + PLOT_H}" x2="{LEFT + PLOT_W}" y2="{TOP + PLOT_H}" '
             'class="chart-axis"/>',
             f'<text x="{LEFT - 4}" y="{TOP + 10}" text-anchor="end" class="chart-label">'
             f"{top}</text>",
             f'<text x="{LEFT - 4}" y="{TOP + PLOT_H}" text-anchor="end" class="chart-label">'
             "0</text>"]
    step = PLOT_W / len(buckets)
    last = len(buckets) - 1
    for i, bucket in enumerate(buckets):
        if i % 6 == 0 or i == last:
            x, anchor = (LEFT + PLOT_W, "end") if i == last else (LEFT + i * step, "start")
            parts.append(f'<text x="{x:.1f}" y="{HEIGHT - 6}" text-anchor="{anchor}" '
                         f'class="chart-label">{bucket.hour.strftime("%H:00")}</text>')
    return "".join(parts)


def summary(buckets: list[Bucket]) -> dict[str, int]:
    return {name: sum(getattr(b, name) for b in buckets) for name, _, _ in OUTCOMES}


def hourly_chart(buckets: list[Bucket], prefix: str, title: str) -> Markup:
    """A stacked bar per hour; `prefix` keeps this chart's pattern ids apart from others'."""
    totals = summary(buckets)
    label = (f"{title}: deliveries per hour over the last {len(buckets)} hours, "
             + ", ".join(f"{n} {name}" for name, n in totals.items()))
    top = max((b.total for b in buckets), default=0) or 1
    step = PLOT_W / max(len(buckets), 1)
    bars = "".join(_bar(prefix, LEFT + i * step + 1, step - 2, b, PLOT_H / top)
                   for i, b in enumerate(buckets))
    return Markup(  # noqa: S704 (every text in it went through escape())
        f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
        f'class="chart" xmlns="http://www.w3.org/2000/svg">{_defs(prefix)}'
        f"{_axes(buckets, top)}{bars}</svg>")


def legend_swatch(kind: str, prefix: str = "legend") -> Markup:
    """A small square in an outcome's pattern, for the legend beside the charts."""
    return Markup(  # noqa: S704 (no text from outside in it)
        f'<svg viewBox="0 0 14 14" width="14" height="14" aria-hidden="true" '
        f'xmlns="http://www.w3.org/2000/svg">{_defs(prefix)}'
        f'<rect width="14" height="14" {_fill(prefix, kind)} class="chart-bar"/></svg>')
