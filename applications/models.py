from django.db import models
from oauth2_provider.models import AbstractApplication

from tenant.models import Tenant


class Application(AbstractApplication):
    """An application that signs its users in through the portal (OpenID Connect), owned by one tenant: only
    that tenant's users get codes or tokens for it. DOT's swappable OAUTH2_PROVIDER_APPLICATION_MODEL; it lives
    in an app of its own because DOT's migrations depend on this app's first migration."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="applications")

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        ordering = ["name"]
