from django.core.management.base import BaseCommand, CommandError

from opsconsole.models import ApiToken


class Command(BaseCommand):
    help = (
        "Create a bearer token for the machine APIs (metrics, rollbacks, Alertmanager, "
        "system status); it is printed only once."
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="what the token is for, e.g. 'ci' or 'api-server'")

    def handle(self, *args, name: str, **options):
        name = name.strip()
        if not name:
            raise CommandError("the token needs a name")
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(
                f"a token named {name!r} exists already; revoke it in the admin first"
            )
        _, token = ApiToken.issue(name)
        self.stdout.write(token)
        self.stderr.write(f"Token {name!r} created. Store it now: it cannot be shown again.")
