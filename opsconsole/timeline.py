"""One line of a record's timeline, as the incident and request pages show it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    what: str  # "Requested", "Acknowledged", "Checked"
    who: str  # a person, "the policy", or empty
    text: str
    ok: bool | None = None  # a check that passed or failed; None for everything else
