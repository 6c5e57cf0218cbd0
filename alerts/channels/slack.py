from urllib.parse import urlsplit

from alerts.channels.base import Delivery, Message, Transport, TransportError
from opsconsole import http

COLOURS = {"critical": "#d32f2f", "high": "#f57c00", "medium": "#fbc02d", "low": "#1976d2"}
RESOLVED_COLOUR = "#2e7d32"


class SlackChannel(Transport):
    """Slack incoming webhook. The URL is the credential: it is the channel's secret."""

    kind = "slack"
    label = "Slack"
    credential_hint = "The incoming webhook URL (https://hooks.slack.com/services/…)."

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        parts = urlsplit(secret or "")
        if parts.scheme not in ("https", "http") or not parts.netloc or not parts.path.strip("/"):
            raise ValueError("Set the secret to the Slack incoming webhook URL.")
        return config

    def payload(self, message: Message) -> dict:
        colour = (
            RESOLVED_COLOUR
            if message.event == "resolved"
            else COLOURS.get(message.priority, "#888")
        )
        fields = [
            {"title": "Priority", "value": message.priority, "short": True},
            {"title": "Component", "value": message.component or "-", "short": True},
            {"title": "Time", "value": f"{message.at:%Y-%m-%d %H:%M:%S %Z}", "short": True},
        ]
        details = {k: v for k, v in message.details.items() if k not in ("labels", "rule_id") and v}
        if details:
            fields.append(
                {
                    "title": "Details",
                    "value": "\n".join(f"{k}: {v}" for k, v in details.items()),
                    "short": False,
                }
            )
        actions = []
        if message.ack_url and message.event in ("firing", "repeat"):
            actions.append({"type": "button", "text": "Acknowledge", "url": message.ack_url})
        return {
            "text": message.headline,
            "attachments": [
                {
                    "color": colour,
                    "title": message.title,
                    "title_link": message.incident_url or None,
                    "fields": fields,
                    "actions": actions,
                    "footer": "opsconsole",
                    "ts": int(message.at.timestamp()),
                }
            ],
        }

    def send(self, message: Message) -> Delivery:
        try:
            response = http.request(
                "POST", self.secret, json=self.payload(message), secrets=[self.secret]
            )
        except http.HttpError as exc:
            raise TransportError.from_http(exc) from None
        return Delivery(http_status=response.status_code, detail=http.describe_body(response))
