from tenant.models import Domain, Tenant


def tenant_for_username(*, username: str) -> Tenant | None:
    """The tenant that owns the username's domain, by verified domain only."""
    _, at, domain = username.rpartition("@")
    if not at or not domain:
        return None
    found = Domain.objects.filter(name=domain.strip().lower(), verified=True).select_related("tenant").first()
    return found.tenant if found else None
