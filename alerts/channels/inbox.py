from django.db import transaction
from django.utils import timezone

from alerts.channels.base import Delivery, Message, Transport


class InboxChannel(Transport):
    """Delivers into the console's own inbox page: see what a pager would say, without one."""

    kind = "inbox"
    label = "In-console inbox"
    local = True

    def send(self, message: Message) -> Delivery:
        # alerts.models builds its kind choices from this registry: import at use.
        from alerts.models import InboxMessage, Incident

        fields = {
            "event": message.event,
            "priority": message.priority,
            "headline": message.headline,
            "text": message.text(),
            "ack_url": message.ack_url if message.event in ("firing", "repeat") else "",
            "updated_at": message.at or timezone.now(),
        }
        with transaction.atomic():
            thread = None
            if message.incident_id is not None:
                # One delivery of an incident at a time: two workers sending "firing" and
                # "acknowledged" together would otherwise both start a thread.
                list(Incident.objects.select_for_update().filter(pk=message.incident_id))
                thread = InboxMessage.objects.filter(
                    channel=self.channel, incident_id=message.incident_id
                ).first()
            if thread is None:
                item = InboxMessage.objects.create(
                    channel=self.channel, incident_id=message.incident_id, **fields
                )
                return Delivery(detail=f"inbox message {item.pk}")
            # An update of the incident updates its message; what it said before stays.
            # A late retry of an older event joins the history instead of the headline.
            if fields["updated_at"] < thread.updated_at:
                older = {"at": fields["updated_at"].isoformat(), "event": message.event,
                         "text": fields["text"]}  # fmt: skip
                history = sorted([*thread.history, older], key=lambda h: h["at"])
                InboxMessage.objects.filter(pk=thread.pk).update(history=history)
                return Delivery(detail=f"inbox message {thread.pk}: an earlier update kept")
            before = {
                "at": thread.updated_at.isoformat(), "event": thread.event, "text": thread.text,
            }  # fmt: skip
            InboxMessage.objects.filter(pk=thread.pk).update(
                history=[*thread.history, before], **fields
            )
        return Delivery(detail=f"inbox message {thread.pk} updated")
