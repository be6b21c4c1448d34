from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from medvault.accounts.models import AccountStatus
from medvault.accounts.services import user_set_status


class Command(BaseCommand):
    help = "Approve a pending (or rejected) account so that it can log in."

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("username")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        user = get_user_model().objects.filter(username=options["username"]).first()
        if user is None:
            raise CommandError(f"no user named {options['username']!r}")
        user_set_status(user=user, status=AccountStatus.APPROVED)
        self.stdout.write(f"Approved {user.username} ({user.get_role_display()}).")
