"""Models that exercise the console's shared machinery in tests only."""

from django.db import models

from opsconsole.approvals.models import ApprovalRequest
from opsconsole.fields import EncryptedTextField


class Vault(models.Model):
    name = models.CharField(max_length=50)
    secret = EncryptedTextField()
    optional_secret = EncryptedTextField(blank=True, default="")

    def __str__(self) -> str:
        return self.name


class ChangeRequest(ApprovalRequest):
    REQUEST_PERMISSION = "opsconsole.request_rollback"
    APPROVE_PERMISSION = "opsconsole.approve_rollback"

    environment = models.CharField(max_length=50, default="production")
    two_person_rule = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"change of {self.environment}"

    def requires_two_people(self) -> bool:
        return self.two_person_rule

    def confirmation_phrase(self) -> str:
        return self.environment
