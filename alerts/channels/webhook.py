import json
from urllib.parse import urlsplit

from alerts.channels.base import Delivery, Message, Transport, TransportError
from opsconsole import http
from opsconsole.webhooks import sign_timestamped


class WebhookChannel(Transport):
    """JSON to any URL, signed like the console's own webhooks (HMAC-SHA256 of "<ts>.<body>")."""

    kind = "webhook"
    label = "Webhook"
    credential_hint = "The HMAC signing secret the receiver checks."

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        parts = urlsplit(config.get("url") or "")
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("Set 'url' to the http(s) address that receives the JSON.")
        if not secret:
            raise ValueError("Set the secret: the receiver verifies the signature with it.")
        return config

    def payload(self, message: Message) -> dict:
        return {
            "event": message.event,
            "incident_id": message.incident_id,
            "fingerprint": message.fingerprint,
            "title": message.title,
            "priority": message.priority,
            "component": message.component,
            "details": message.details,
            "at": message.at.isoformat(),
            "ack_url": message.ack_url,
            "delivery_id": message.delivery_key,
        }

    def send(self, message: Message) -> Delivery:
        body = json.dumps(self.payload(message), default=str).encode()
        headers = {"Content-Type": "application/json", **sign_timestamped(self.secret, body)}
        if message.delivery_key:
            # A re-send after a crash carries the same key: the receiver can drop the copy.
            headers["Idempotency-Key"] = message.delivery_key
        try:
            response = http.request("POST", self.config["url"], content=body, headers=headers)
        except http.HttpError as exc:
            raise TransportError.from_http(exc) from None
        return Delivery(http_status=response.status_code)
