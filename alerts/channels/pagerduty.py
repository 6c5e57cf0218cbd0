from django.conf import settings

from alerts.channels.base import Delivery, Message, Transport, TransportError
from opsconsole import http

SEVERITY = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
ACTION = {
    "firing": "trigger",
    "repeat": "trigger",
    "test": "trigger",
    "acknowledged": "acknowledge",
    "resolved": "resolve",
}


class PagerDutyChannel(Transport):
    """PagerDuty Events API v2; the incident fingerprint is the dedup key."""

    kind = "pagerduty"
    label = "PagerDuty"
    default_priorities = ("critical",)
    credential_hint = "The 32-character integration (routing) key."

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        if len((secret or "").strip()) != 32:
            raise ValueError("Set the secret to the 32-character PagerDuty routing key.")
        return config

    def payload(self, message: Message) -> dict:
        body = {
            "routing_key": self.secret.strip(),
            "event_action": ACTION.get(message.event, "trigger"),
            "dedup_key": message.fingerprint[:255],
        }
        if body["event_action"] == "trigger":
            body["payload"] = {
                "summary": message.title[:1024],
                "source": message.component or "opsconsole",
                "severity": SEVERITY.get(message.priority, "error"),
                "component": message.component or None,
                "custom_details": message.details,
            }
            if message.incident_url:
                body["links"] = [{"href": message.incident_url, "text": "Incident in opsconsole"}]
        return body

    def send(self, message: Message) -> Delivery:
        try:
            response = http.request(
                "POST", settings.OPSCONSOLE_PAGERDUTY_EVENTS_URL, json=self.payload(message),
                secrets=[self.secret.strip()],
            )  # fmt: skip
        except http.HttpError as exc:
            raise TransportError.from_http(exc) from None
        return Delivery(http_status=response.status_code, detail=http.describe_body(response))
