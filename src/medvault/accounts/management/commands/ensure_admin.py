import os

from django.core.management.base import BaseCommand

from medvault.accounts.services import admin_ensure


class Command(BaseCommand):
    help = (
        "Create the administrator 'admin' if no administrator exists. The password comes from "
        "MEDVAULT_ADMIN_PASSWORD, or is generated and printed once. Safe to run repeatedly."
    )

    def add_arguments(self, parser):  # type: ignore[no-untyped-def]
        parser.add_argument("--username", default="admin")

    def handle(self, *args, **options):  # type: ignore[no-untyped-def]
        password = os.environ.get("MEDVAULT_ADMIN_PASSWORD", "")
        user, created, generated = admin_ensure(username=options["username"], password=password)
        if not created:
            self.stdout.write(f"An administrator exists ('{user.username}'); nothing to do.")
        elif generated:
            self.stdout.write(
                f"Created administrator '{user.username}' with password: {generated}\n"
                "Write it down now; it is not shown again."
            )
        else:
            self.stdout.write(
                f"Created administrator '{user.username}' with the password from MEDVAULT_ADMIN_PASSWORD."
            )
