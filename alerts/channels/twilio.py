"""SMS and voice calls through Twilio, over the console's own HTTP function.

Twilio's client takes an `http_client`; ours sends through opsconsole.http (one
set of timeouts, redaction and the test seam) and, when
OPSCONSOLE_TWILIO_BASE_URL is set, to that host instead of api.twilio.com.
"""

from __future__ import annotations

import functools
import logging
import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit
from xml.sax.saxutils import escape

from django.conf import settings

from alerts.channels.base import Delivery, Message, Transport, TransportError, string_list
from opsconsole import http

if TYPE_CHECKING:
    from twilio.rest import Client

E164 = re.compile(r"^\+[1-9]\d{7,14}$")
# Twilio error codes that no retry can fix: invalid/unreachable "To", not SMS-capable,
# unsubscribed recipient, invalid "From", account suspended.
PERMANENT_CODES = {
    21211,
    21214,
    21217,
    21408,
    21610,
    21612,
    21614,
    21606,
    21659,
    20003,
    20404,
    30003,
}
GSM7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Characters that silently switch a message to UCS-2 (70 characters a segment,
# twice the price): replace them with their plain equivalents.
GSM_REPLACEMENTS = {
    "\u00a0": " ",  # no-break space
    "\u2018": "'",  # curly quotes
    "\u2019": "'",
    "\u201c": '"',
    "\u201d": '"',
    "\u2013": "-",  # dashes
    "\u2014": "-",
    "\u2026": "...",  # ellipsis
}
# GSM 03.38's extension table: still one GSM-7 segment, each character taking two of
# its 160 places (an escape, then the character). Headlines like "[FIRING] [CRITICAL]"
# need [ and ].
GSM7_EXTENSION = set("^{}\\[~]|€\f")
SMS_LIMIT_GSM = 160
SMS_LIMIT_UCS2 = 70


def _places(ch: str, gsm: bool) -> int:
    return 2 if gsm and ch in GSM7_EXTENSION else 1


def sms_text(text: str) -> str:
    """One SMS segment: GSM-7 where possible, cut at a word with "..." when too long."""
    text = "".join(GSM_REPLACEMENTS.get(ch, ch) for ch in text)
    text = re.sub(r"[ \t]+", " ", text).strip()
    gsm = all(ch in GSM7 or ch in GSM7_EXTENSION for ch in text)
    limit = SMS_LIMIT_GSM if gsm else SMS_LIMIT_UCS2
    if sum(_places(ch, gsm) for ch in text) <= limit:
        return text
    used, end = 0, 0
    for end, ch in enumerate(text):  # noqa: B007 - `end` is where the budget ran out
        used += _places(ch, gsm)
        if used > limit - 3:
            break
    cut = text[:end]
    if " " in cut[len(cut) // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:-") + "..."


@functools.cache
def console_http_client_class():
    """The Twilio client's HTTP layer, routed through `opsconsole.http` (built once, on the
    first page sent). The twilio package is imported on first use: it costs every process
    that never pages by SMS a few MB."""
    from twilio.http import HttpClient
    from twilio.http.response import Response

    class ConsoleTwilioHttpClient(HttpClient):
        def __init__(self, timeout: float = 15.0):
            super().__init__(
                logging.getLogger("opsconsole.twilio"), is_async=False, timeout=timeout
            )

        def request(self, method, uri, params=None, data=None, headers=None, auth=None,
                    timeout=None, allow_redirects=False):  # fmt: skip
            base = getattr(settings, "OPSCONSOLE_TWILIO_BASE_URL", "")
            if base:
                target, original = urlsplit(base), urlsplit(uri)
                uri = urlunsplit((target.scheme, target.netloc, original.path, original.query, ""))
            response = http.request(
                method, uri, params=params, data=data, headers=headers, auth=auth,
                timeout=timeout or self.timeout, raise_for_status=False,
            )  # fmt: skip
            return Response(response.status_code, response.text, response.headers)

    return ConsoleTwilioHttpClient


class _TwilioChannel(Transport):
    default_priorities = ("critical",)
    credential_hint = "The Twilio auth token."

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        for key in ("account_sid", "from_number"):
            if not config.get(key):
                raise ValueError(f"Missing configuration: {key}.")
        if not re.match(r"^AC[0-9a-fA-F]{32}$", config["account_sid"]):
            raise ValueError("account_sid must look like AC followed by 32 hexadecimal characters.")
        numbers = [config["from_number"], *string_list(config, "to_numbers")]
        bad = [n for n in numbers if not E164.match(n)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an E.164 phone number (like +14155550100).")
        if not secret:
            raise ValueError("Set the secret to the Twilio auth token.")
        return {**config, "to_numbers": string_list(config, "to_numbers")}

    def client(self) -> Client:
        from twilio.rest import Client

        return Client(
            self.config["account_sid"], self.secret, http_client=console_http_client_class()()
        )

    def send(self, message: Message) -> Delivery:
        from twilio.base.exceptions import TwilioRestException

        client, sids = self.client(), []
        for number in self.config["to_numbers"]:
            try:
                sids.append(self.send_one(client, number, message))
            except TwilioRestException as exc:
                code = int(exc.code) if exc.code else None
                permanent = code in PERMANENT_CODES or exc.status in (400, 401, 403, 404)
                if exc.status == 429 or (exc.status and exc.status >= 500):
                    permanent = False
                raise TransportError(
                    f"Twilio refused {number}: {exc.msg}",
                    permanent=permanent, http_status=exc.status, provider_code=str(code or ""),
                ) from None  # fmt: skip
            except http.HttpError as exc:
                raise TransportError.from_http(exc) from None
        return Delivery(http_status=201, provider_code=",".join(sids), detail=f"{len(sids)} sent")


class SmsChannel(_TwilioChannel):
    """One SMS per recipient, kept to a single segment."""

    kind = "sms"
    label = "SMS (Twilio)"

    def send_one(self, client: Client, number: str, message: Message) -> str:
        body = sms_text(
            f"{message.headline} {message.ack_url if message.event == 'firing' else ''}"
        )
        return client.messages.create(to=number, from_=self.config["from_number"], body=body).sid


class VoiceChannel(_TwilioChannel):
    """A short spoken message, for the last escalation level."""

    kind = "voice"
    label = "Voice call (Twilio)"

    def send_one(self, client: Client, number: str, message: Message) -> str:
        spoken = f"opsconsole {message.event} alert, priority {message.priority}. {message.title}."
        twiml = f'<Response><Say voice="alice">{escape(spoken[:300])}</Say></Response>'
        return client.calls.create(to=number, from_=self.config["from_number"], twiml=twiml).sid
