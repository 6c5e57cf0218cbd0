"""Small server-rendered SVG charts: no script, no CDN, works with the network cut."""

from __future__ import annotations

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe


def sparkline(values: list[float], *, width: int = 240, height: int = 40, label: str = "",
              limit: float | None = None) -> SafeString:  # fmt: skip
    """A polyline of `values`, with an optional dashed line at `limit` (a threshold)."""
    if not values:
        return format_html('<span class="sparkline-empty">{}</span>', "no samples yet")
    top = max([*values, limit or 0]) or 1.0
    step = width / max(1, len(values) - 1)

    def y(v: float) -> float:
        return round(height - 2 - (v / top) * (height - 4), 1)

    points = " ".join(f"{round(i * step, 1)},{y(v)}" for i, v in enumerate(values))
    threshold = ""
    if limit is not None:
        threshold = f'<line x1="0" x2="{width}" y1="{y(limit)}" y2="{y(limit)}" class="limit" />'
    title = format_html(
        "<title>{}: last {}, max {}</title>", label, f"{values[-1]:g}", f"{max(values):g}"
    )
    return mark_safe(  # noqa: S308 - numbers and an escaped title only
        f'<svg class="sparkline" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'role="img" aria-label="{escape(label)}">{title}{threshold}'
        f'<polyline points="{points}" /></svg>'
    )
