"""Environment variables without ever showing a value: keyed hashes, drift, `.env` files.

The console compares its values with the provider's, and the provider's with what
it saw last, by HMAC-SHA256 keyed with a key derived from SECRET_KEY and the
environment: a hash says whether a value changed and nothing of it, and cannot be
matched against a guess without the key. A new key (SECRET_KEY rotated) is noticed
by the stored key id, and the next look takes a new baseline instead of calling
every variable changed.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import re
from dataclasses import dataclass, field

from django.conf import settings
from dotenv.parser import parse_stream

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,199}")
# A .env upload bigger than this is not a .env file.
MAX_DOTENV_BYTES = 256 * 1024


class DotenvError(ValueError):
    """Said to the person who uploaded the file, in one line."""


def _key(scope: str) -> bytes:
    return hmac.new(settings.SECRET_KEY.encode(), f"variables:{scope}".encode(), "sha256").digest()


def key_id(scope: str) -> str:
    return hashlib.sha256(_key(scope)).hexdigest()[:12]


def digests(values: dict[str, str], scope: str) -> dict:
    """{"key": key id, "names": {name: keyed hash}}: what is stored, never a value."""
    key = _key(scope)
    return {
        "key": key_id(scope),
        "names": {
            name: hmac.new(key, value.encode(), "sha256").hexdigest()[:32]
            for name, value in values.items()
        },
    }


@dataclass
class Drift:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def as_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "removed": self.removed, "changed": self.changed}

    def describe(self) -> str:
        parts = [
            *(f"{n} changed" for n in self.changed),
            *(f"{n} added" for n in self.added),
            *(f"{n} removed" for n in self.removed),
        ]
        return ", ".join(parts)


def drift(baseline: dict, current: dict) -> Drift | None:
    """What changed from `baseline` to `current` (both from `digests()`); None when they
    were made with different keys and cannot be compared."""
    if not baseline or baseline.get("key") != current.get("key"):
        return None
    before, now = baseline.get("names", {}), current.get("names", {})
    return Drift(
        added=sorted(set(now) - set(before)),
        removed=sorted(set(before) - set(now)),
        changed=sorted(n for n in set(now) & set(before) if now[n] != before[n]),
    )


def parse_dotenv(data: bytes) -> dict[str, str]:
    """Names and values of a `.env` file (comments, quotes, `export` prefixes, multi-line
    quoted values: python-dotenv's parser, without interpolating ${OTHER})."""
    if len(data) > MAX_DOTENV_BYTES:
        raise DotenvError(f"the file is over {MAX_DOTENV_BYTES // 1024} KB; is it a .env file?")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DotenvError("the file is not UTF-8 text") from None
    # Errors name lines, never their text: a stray line may be a secret (a token pasted
    # alone, a PEM's second line), and the message goes to a page and a cookie.
    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:
            # python-dotenv would skip the line with a warning: an import that drops a
            # variable unseen is worse than one that stops and says where.
            raise DotenvError(f"line {line} is not NAME=value")
        if binding.key is None:
            continue
        if not VARIABLE_NAME.fullmatch(binding.key):
            raise DotenvError(
                f"line {line}: not a variable name (letters, digits and _, not starting "
                "with a digit)"
            )
        if binding.value is None:
            raise DotenvError(f"line {line} has a name but no value (NAME=value)")
        values[binding.key] = binding.value
    if not values:
        raise DotenvError("no variables found (lines like NAME=value)")
    return values
