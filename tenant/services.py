from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.text import slugify

from tenant.models import Domain, Tenant, User


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "tenant"
    slug, n = base, 1
    while Tenant.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def tenant_create(*, name: str, domains: Iterable[str], slug: str = "") -> Tenant:
    tenant = Tenant(name=name.strip(), slug=slug or _unique_slug(name))
    tenant.full_clean()
    tenant.save()
    for domain_name in domains:
        domain_add(tenant=tenant, name=domain_name)
    return tenant


def domain_add(*, tenant: Tenant, name: str) -> Domain:
    domain = Domain(tenant=tenant, name=name.strip().lower())
    domain.full_clean()
    domain.save()
    return domain


@transaction.atomic
def tenant_admin_create(*, tenant: Tenant, upn: str, display_name: str = "", password: str | None = None) -> User:
    """A tenant administrator. With a password it is a cloud account (break-glass); without, it signs in
    through pass-through like any user of the tenant."""
    if not any(upn.lower().endswith("@" + d.name) for d in tenant.domains.all()):
        raise ValidationError({"upn": "The administrator's UPN must be in one of the tenant's domains."})
    user = User.objects.create_user(
        upn, password, tenant=tenant, display_name=display_name, is_staff=True,
        source=User.Source.CLOUD if password else User.Source.ON_PREMISES,
    )
    user.user_permissions.set(tenant_admin_permissions())
    return user


def tenant_admin_permissions():
    from django.contrib.auth.models import Permission

    models = {
        "tenant": ["tenant", "domain", "user"],
        "agents": ["agent", "registrationtoken"],
        "signin": ["signinevent"],
        "applications": ["application"],
    }
    query = Permission.objects.none()
    for app, names in models.items():
        query = query | Permission.objects.filter(content_type__app_label=app, content_type__model__in=names)
    return query.exclude(codename__in=["add_tenant", "delete_tenant"])


@transaction.atomic
def tenant_policy_set(*, tenant: Tenant, mfa_policy: str | None = None, password_grant_enabled: bool | None = None,
                      lockout_threshold: int | None = None) -> Tenant:
    """Change a tenant's sign-in policies; what is not given stays as it is."""
    changes = {"mfa_policy": mfa_policy, "password_grant_enabled": password_grant_enabled,
               "lockout_threshold": lockout_threshold}
    changes = {name: value for name, value in changes.items() if value is not None}
    if lockout_threshold is not None and lockout_threshold < 1:
        raise ValidationError({"lockout_threshold": "The lockout threshold must be at least 1."})
    for name, value in changes.items():
        setattr(tenant, name, value)
    tenant.full_clean()
    tenant.save(update_fields=list(changes) or None)
    return tenant
