"""Template helpers shared by the console's pages."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince, timeuntil

register = template.Library()


@register.filter
def when(moment: datetime | None) -> SafeString | str:
    """`3 minutes ago` (or `in 4 minutes`), the exact time with seconds on hover and for
    screen readers and machines in `datetime`."""
    if moment is None:
        return "—"
    now = timezone.now()
    words = (
        f"{timesince(moment, now, depth=1)} ago"
        if moment <= now
        else f"in {timeuntil(moment, now, depth=1)}"
    )
    exact = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html('<time datetime="{}" title="{}">{}</time>', moment.isoformat(), exact, words)


@register.filter
def seconds(value: float | None) -> str:
    """A duration with its unit: `850 ms`, `12.4 s`, `3 min 5 s`."""
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, rest = divmod(round(value), 60)
    return f"{minutes} min {rest} s" if rest else f"{minutes} min"


@register.filter
def admin_url(record) -> str:
    """The console page of any record."""
    meta = record._meta
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_change", args=[record.pk])
