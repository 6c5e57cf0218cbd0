"""Log redaction on adversarial input against a normal access line, in the same run.

Every log line is redacted, an anonymous request's path included, so the cost
of a 64 KB line shaped to make a backtracking pattern quadratic is reported
against the cost of an ordinary line (per character, so the ratio compares
like with like). Linear means the per-character ratio stays near 1.
"""

from __future__ import annotations

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django

django.setup()

from bench.common import machine  # noqa: E402
from opsconsole.logs import redact_text  # noqa: E402

NORMAL = "GET /admin/deployments/deployment/42/change/?page=2 200 12.3ms user=7 token=abc123"
SHAPES = {
    "a-a-a-…": "a-" * 32_768,
    "tokentoken…": "token" * 13_107,
    "a://a://…": "a://" * 16_384,
    "postgres://u::::…": "postgres://u:" + ":" * 65_000,
    "-=-=…": "-=" * 32_768,
}


def per_char_us(text: str, repeat: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(repeat):
            redact_text(text)
        best = min(best, (time.perf_counter() - started) / repeat)
    return best / len(text) * 1e6, best


def main() -> None:
    print(f"machine: {machine()}")
    base_char, base_line = per_char_us(NORMAL, 20_000)
    print(f"normal line ({len(NORMAL)} chars): {base_line * 1e6:.1f} µs, {base_char:.3f} µs/char")
    for name, text in SHAPES.items():
        char, line = per_char_us(text, 20)
        print(
            f"{name:>20} ({len(text) // 1024} KB): {line * 1e3:7.2f} ms, "
            f"{char:.3f} µs/char = {char / base_char:5.2f} times the normal per-character cost"
        )


if __name__ == "__main__":
    main()
