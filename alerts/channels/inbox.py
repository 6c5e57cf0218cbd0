from alerts.channels.base import Delivery, Message, Transport


class InboxChannel(Transport):
    """Delivers into the console's own inbox page: see what a pager would say, without one."""

    kind = "inbox"
    label = "In-console inbox"
    local = True

    def send(self, message: Message) -> Delivery:
        # alerts.models builds its kind choices from this registry: import at use.
        from alerts.models import InboxMessage

        item = InboxMessage.objects.create(
            channel=self.channel,
            incident_id=message.incident_id,
            event=message.event,
            priority=message.priority,
            headline=message.headline,
            text=message.text(),
            ack_url=message.ack_url if message.event in ("firing", "repeat") else "",
        )
        return Delivery(detail=f"inbox message {item.pk}")
