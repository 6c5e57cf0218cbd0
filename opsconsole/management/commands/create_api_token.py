"""manage.py create_api_token NAME --scope …: a bearer token for the machine APIs."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from opsconsole.models import ApiToken


class Command(BaseCommand):
    help = (
        "Create a bearer token for the machine APIs, limited to its scopes; it is printed "
        "only once. Scopes: " + ", ".join(f"{k} ({v})" for k, v in ApiToken.SCOPES.items())
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="what the token is for, e.g. 'ci' or 'api-server'")
        parser.add_argument(
            "--scope",
            action="append",
            default=[],
            help="what it may do (repeat for several): " + ", ".join(ApiToken.SCOPES),
        )
        parser.add_argument(
            "--user",
            help="who answers for it (a username); required for rollback:request, whose "
            "requests are then that person's",
        )
        parser.add_argument(
            "--expires-days", type=int, help="valid for this many days (default: until revoked)"
        )

    def handle(self, *args, name: str, scope, user, expires_days, **options):
        name = name.strip()
        if not name:
            raise CommandError("the token needs a name")
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(
                f"a token named {name!r} exists already; revoke it in the admin first"
            )
        owner = None
        if user:
            owner = get_user_model().objects.filter(username=user, is_active=True).first()
            if owner is None:
                raise CommandError(f"no active user named {user!r}")
        elif "rollback:request" in scope or "deploy:check" in scope:
            raise CommandError(
                "a token that files rollback requests or deploy approvals needs --user (its owner)"
            )
        if expires_days is not None and expires_days <= 0:
            raise CommandError("--expires-days must be a positive number of days")
        expires = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            _, token = ApiToken.issue(name, scopes=scope, created_by=owner, expires_at=expires)
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(token)
        self.stderr.write(f"Token {name!r} created. Store it now: it cannot be shown again.")
