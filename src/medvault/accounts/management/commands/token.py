from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from medvault.accounts.audit import audit_record
from medvault.accounts.tokens import token_create


class Command(BaseCommand):
    help = "Create a new API token for USERNAME and print its key (shown only this once)."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("username")
        parser.add_argument("--name", default="command line")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user named {options['username']!r}")
        token, key = token_create(user=user, name=options["name"])
        audit_record(user=user, action="token", detail=f"token {token.prefix}… created from the command line")
        self.stdout.write(key)
