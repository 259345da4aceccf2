"""The sign-in pages follow every change of a branding: each portal process forgets what it remembered
(branding/selectors.py, through tenant/routing.py) once the change commits, every node included. A rolled-back
change tells nobody."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from branding.models import Branding
from tenant.routing import routes_changed


@receiver([post_save, post_delete], sender=Branding, dispatch_uid="branding.routing")
def signin_branding_follows_changes(**kwargs) -> None:
    transaction.on_commit(routes_changed, robust=True)
