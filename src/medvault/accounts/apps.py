from typing import Any

from django.apps import AppConfig


def _forget_group_ids(sender: Any, instance: Any, **kwargs: Any) -> None:
    # ``permissions.user_group_ids`` keeps a user's group ids on the user object; a change
    # made through that same object (user.groups.add(...)) must not be hidden by it.
    instance.__dict__.pop("_medvault_group_ids", None)


class AccountsConfig(AppConfig):
    name = "medvault.accounts"
    label = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import m2m_changed

        m2m_changed.connect(
            _forget_group_ids, sender=get_user_model().groups.through,
            dispatch_uid="medvault-forget-group-ids",
        )
