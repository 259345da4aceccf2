"""Reads about SAML service providers."""

from __future__ import annotations

from samlidp.models import ServiceProvider
from tenant.models import Tenant


def service_provider_by_entity_id(*, tenant: Tenant, entity_id: str) -> ServiceProvider | None:
    return (ServiceProvider.objects.select_related("application")
            .filter(application__tenant=tenant, entity_id=entity_id).first())


def service_provider_by_pk(*, tenant: Tenant, pk) -> ServiceProvider | None:
    return ServiceProvider.objects.select_related("application").filter(application__tenant=tenant, pk=pk).first()
