import smtplib
from html import escape

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives
from django.core.validators import validate_email

from alerts.channels.base import Delivery, Message, Transport, TransportError, string_list


class EmailChannel(Transport):
    """Email through Django's backend (EMAIL_URL); text and HTML."""

    kind = "email"
    label = "Email"
    default_priorities = ("critical", "high")

    @classmethod
    def validate(cls, config, secret):
        config = super().validate(config, secret)
        to = string_list(config, "to")
        for address in to:
            try:
                validate_email(address)
            except ValidationError:
                raise ValueError(f"{address!r} is not an email address.") from None
        return {**config, "to": to}

    def send(self, message: Message) -> Delivery:
        text = message.text()
        html = "<br>".join(escape(line) for line in text.splitlines())
        if message.ack_url and message.event in ("firing", "repeat"):
            html += f'<p><a href="{escape(message.ack_url)}">Acknowledge this incident</a></p>'
        mail = EmailMultiAlternatives(
            subject=message.headline[:200],
            body=text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=self.config["to"],
        )
        mail.attach_alternative(html, "text/html")
        try:
            mail.send()
        except smtplib.SMTPRecipientsRefused as exc:
            raise TransportError(
                f"recipients refused: {list(exc.recipients)}", permanent=True
            ) from None
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportError(
                f"SMTP authentication failed ({exc.smtp_code})", permanent=True
            ) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransportError(f"SMTP error: {exc}") from None
        return Delivery(detail=f"sent to {len(self.config['to'])} recipient(s)")
