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


# Heartbeat colours, each at least 3:1 against the light and the dark admin background.
BEAT_COLOURS = {"up": "#2da44e", "retry": "#d4a72c", "down": "#e5534b"}


def heartbeat_bar(beats: list[tuple[str, str]], *, label: str, slots: int = 50) -> SafeString:
    """One bar per result, oldest left: `beats` are (state, hover text), state one of
    "up", "retry" (failed, still retrying) and "down" (failed, unhealthy)."""
    if not beats:
        return format_html('<span class="sparkline-empty">{}</span>', "no results yet")
    width, gap, height = 6, 2, 24
    beats = beats[-slots:]
    offset = (slots - len(beats)) * (width + gap)  # newest at the right edge, as it fills
    bars = "".join(
        format_html(
            '<rect x="{}" y="0" width="{}" height="{}" rx="2" fill="{}"><title>{}</title></rect>',
            offset + i * (width + gap),
            width,
            height,
            BEAT_COLOURS[state],
            text,
        )
        for i, (state, text) in enumerate(beats)
    )
    counts = {s: sum(1 for state, _ in beats if state == s) for s in BEAT_COLOURS}
    summary = (
        f"{label}: last {len(beats)} results, {counts['up']} up, {counts['retry']} retrying, "
        f"{counts['down']} down"
    )
    total = slots * (width + gap) - gap
    return mark_safe(  # noqa: S308 - numbers, fixed colours and escaped text only
        f'<svg class="heartbeat" width="{total}" height="{height}" viewBox="0 0 {total} {height}" '
        f'preserveAspectRatio="none" role="img" aria-label="{escape(summary)}">{bars}</svg>'
    )
