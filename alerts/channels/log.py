import logging

from alerts.channels.base import Delivery, Message, Transport

log = logging.getLogger("opsconsole.alerts.notify")


class LogChannel(Transport):
    """The embedded default: a log line per notification (and the notification row itself)."""

    kind = "log"
    label = "Log"
    local = True

    def send(self, message: Message) -> Delivery:
        log.warning(
            message.headline,
            extra={
                "incident_id": message.incident_id,
                "event": message.event,
                "channel": self.channel.name,
            },
        )
        return Delivery(detail="logged")
