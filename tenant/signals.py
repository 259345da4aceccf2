"""Routing follows every change of a domain or a tenant, and the tenants' locations every change of a location:
each process forgets its routes (tenant/routing.py, which remembers the locations with them) once the change
commits. A rolled-back change tells nobody."""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tenant.models import Domain, Location, Tenant
from tenant.routing import routes_changed


@receiver([post_save, post_delete], sender=Domain, dispatch_uid="tenant.routing.domain")
@receiver([post_save, post_delete], sender=Tenant, dispatch_uid="tenant.routing.tenant")
@receiver([post_save, post_delete], sender=Location, dispatch_uid="tenant.routing.location")
def routing_follows_changes(**kwargs) -> None:
    transaction.on_commit(routes_changed, robust=True)
