import enum
import logging
from collections.abc import Iterable
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from tenant.domain_proof import DNS_LOOKUP_SECONDS, LookupStatus, txt_lookup
from tenant.models import DirectoryGroup, DirectoryGroupMembership, Domain, GroupsState, Location, Tenant, User

log = logging.getLogger(__name__)


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
        # The platform operator vouches for these: verified without a DNS proof.
        domain_add(tenant=tenant, name=domain_name, verified=True)
    return tenant


def domain_add(*, tenant: Tenant, name: str, verified: bool = False) -> Domain:
    """A domain of the tenant. Unverified (the default) it routes nothing until domain_verify finds its TXT
    record; `verified=True` is for the platform operator only."""
    domain = Domain(tenant=tenant, name=name.strip().lower(), verified=verified)
    domain.full_clean()
    domain.save()
    return domain


class VerificationStatus(enum.StrEnum):
    VERIFIED = "verified"
    ALREADY_VERIFIED = "already_verified"
    NO_RECORD = "no_record"
    WRONG_VALUE = "wrong_value"
    DNS_NO_ANSWER = "dns_no_answer"
    CLAIMED = "claimed"


@dataclass(frozen=True)
class DomainVerification:
    domain: Domain
    status: VerificationStatus
    message: str

    @property
    def verified(self) -> bool:
        return self.status in (VerificationStatus.VERIFIED, VerificationStatus.ALREADY_VERIFIED)


def domain_verify(*, domain: Domain, timeout: float = DNS_LOOKUP_SECONDS) -> DomainVerification:
    """Look up the domain's TXT record and verify the domain when it holds this claim's value. Never raises
    for DNS trouble: the result says what was found."""
    domain.refresh_from_db()
    name, expected = domain.record_name, domain.record_value
    if domain.verified:
        return DomainVerification(domain, VerificationStatus.ALREADY_VERIFIED, f"{domain.name} is already verified.")
    claimed = DomainVerification(
        domain, VerificationStatus.CLAIMED,
        f"{domain.name} is already verified by another tenant, so it cannot be verified here. If your "
        "organisation owns it now, ask the platform operator to move it.")
    if domain.verified_elsewhere():
        return _verification_logged(claimed)
    lookup = txt_lookup(name=name, nameservers=list(settings.PTA_DNS_NAMESERVERS), timeout=timeout)
    if lookup.status is LookupStatus.NO_ANSWER:
        return _verification_logged(DomainVerification(
            domain, VerificationStatus.DNS_NO_ANSWER,
            f"The DNS did not answer for {name} ({lookup.detail}). Nothing changed; try again later."))
    if lookup.status is LookupStatus.NO_RECORD:
        return _verification_logged(DomainVerification(
            domain, VerificationStatus.NO_RECORD,
            f"No TXT record found at {name}. Publish a TXT record named {name} with the value {expected} "
            "and verify again (new DNS records can take a while to appear)."))
    if expected not in (value.strip() for value in lookup.values):
        found = ", ".join(repr(value[:100]) for value in lookup.values[:5])
        return _verification_logged(DomainVerification(
            domain, VerificationStatus.WRONG_VALUE,
            f"The TXT record at {name} holds {found}, not {expected}. Correct it and verify again."))
    try:
        with transaction.atomic():
            locked = Domain.objects.select_for_update().get(pk=domain.pk)
            locked.verified, locked.verified_at = True, timezone.now()
            locked.full_clean()  # refuses when another tenant verified the name meanwhile
            locked.save(update_fields=["verified", "verified_at"])
    except (ValidationError, IntegrityError):
        # IntegrityError: a concurrent verification by another tenant won the conditional unique index.
        return _verification_logged(claimed)
    domain.refresh_from_db()
    return _verification_logged(DomainVerification(
        domain, VerificationStatus.VERIFIED,
        f"{domain.name} is verified: sign-ins of users @{domain.name} now go to {domain.tenant.name}."))


def _verification_logged(result: DomainVerification) -> DomainVerification:
    log.info("domain verification of %s for tenant %s: %s", result.domain.name, result.domain.tenant.slug,
             result.status.value)
    # Kept for the domain's page: what the last look-up found, whoever ran it (the admin console or a command).
    now = timezone.now()
    Domain.objects.filter(pk=result.domain.pk).update(last_check_at=now, last_check_result=result.message)
    result.domain.last_check_at, result.domain.last_check_result = now, result.message
    return result


@transaction.atomic
def tenant_admin_create(*, tenant: Tenant, upn: str, display_name: str = "", password: str | None = None) -> User:
    """A tenant administrator. With a password it is a cloud account (break-glass); without, it signs in
    through pass-through like any user of the tenant."""
    if not any(upn.lower().endswith("@" + d.name) for d in tenant.domains.filter(verified=True)):
        raise ValidationError({"upn": "The administrator's UPN must be in one of the tenant's verified domains."})
    user = User.objects.create_user(
        upn, password, tenant=tenant, display_name=display_name, is_staff=True,
        source=User.Source.CLOUD if password else User.Source.ON_PREMISES,
    )
    user.user_permissions.set(tenant_admin_permissions())
    return user


def tenant_admin_permissions():
    from django.contrib.auth.models import Permission

    models = {
        "tenant": ["tenant", "domain", "user", "location"],
        "branding": ["branding"],
        "agents": ["agent", "registrationtoken"],
        "signin": ["signinevent", "passkeydevice"],
        # Their users' second factors: listed and removed (signin/admin.py FactorAdmin), never added nor edited.
        "otp_totp": ["totpdevice"],
        "otp_static": ["staticdevice"],
        "applications": ["application"],
        "samlidp": ["serviceprovider"],
        "health": ["alertsettings", "incident", "notification"],
        "trail": ["auditevent"],  # view only: no other permission of the trail exists
    }
    query = Permission.objects.none()
    for app, names in models.items():
        query = query | Permission.objects.filter(content_type__app_label=app, content_type__model__in=names)
    return query.exclude(codename__in=["add_tenant", "delete_tenant"])


@transaction.atomic
def tenant_policy_set(*, tenant: Tenant, mfa_policy: str | None = None, password_grant_enabled: bool | None = None,
                      lockout_threshold: int | None = None, refresh_checks_directory: bool | None = None,
                      helpdesk_contact: str | None = None, help_text: str | None = None,
                      phishing_resistant_required: bool | None = None) -> Tenant:
    """Change a tenant's sign-in policies and what its sign-in pages tell people who cannot sign in (the helpdesk
    contact, the help text; "" clears them); what is not given stays as it is."""
    changes = {"mfa_policy": mfa_policy, "password_grant_enabled": password_grant_enabled,
               "lockout_threshold": lockout_threshold, "refresh_checks_directory": refresh_checks_directory,
               "helpdesk_contact": helpdesk_contact, "help_text": help_text,
               "phishing_resistant_required": phishing_resistant_required}
    changes = {name: value for name, value in changes.items() if value is not None}
    if lockout_threshold is not None and lockout_threshold < 1:
        raise ValidationError({"lockout_threshold": "The lockout threshold must be at least 1."})
    for name, value in changes.items():
        setattr(tenant, name, value)
    tenant.full_clean()
    tenant.save(update_fields=list(changes) or None)
    return tenant


@transaction.atomic
def location_set(*, tenant: Tenant, name: str, ranges: Iterable[str], kind: str) -> Location:
    """The tenant's named location ``name``: created, or its ranges and kind replaced. ``ValidationError`` for a
    range that is not a network (every bad one named), an empty name or an unknown kind."""
    location = (Location.objects.select_for_update().filter(tenant=tenant, name=name.strip()).first()
                or Location(tenant=tenant, name=name.strip()))
    location.kind = kind
    location.ranges = "\n".join(ranges)
    location.full_clean()
    location.save()
    return location


def location_remove(*, tenant: Tenant, name: str) -> bool:
    """Remove the tenant's location of that name; False when there was none."""
    deleted, _ = Location.objects.filter(tenant=tenant, name=name.strip()).delete()
    return deleted > 0


# --- a user's directory groups ----------------------------------------------------------------------------

HOLDS_GROUPS = (GroupsState.CURRENT, GroupsState.TRUNCATED)


def user_groups_record(*, user: User, state: str, groups: Iterable[dict] = ()) -> None:
    """Replace the user's stored groups with what the directory reported at this sign-in (``groups``: the agent's
    entries, ``{"id", "name", "dn"}``) when ``state`` is CURRENT or TRUNCATED; any other state stores none (a
    group the agent did not report is never kept from an earlier sign-in). Costs one query when nothing changed."""
    if user.tenant_id is None:  # a platform administrator: no directory
        return
    wanted: dict[str, tuple[str, str]] = {}
    if state in HOLDS_GROUPS:
        for entry in groups:
            guid = str(entry.get("id") or "").strip().lower()[:64]
            if guid:
                wanted[guid] = (str(entry.get("name") or "")[:256], str(entry.get("dn") or "")[:2048])
    held = {m.group.object_guid: (m.group.name, m.group.dn) for m in
            DirectoryGroupMembership.objects.filter(user=user).select_related("group")}
    if held == wanted and user.groups_state == state:
        return
    with transaction.atomic():
        _groups_upsert(tenant_id=user.tenant_id, wanted=wanted)
        ids = dict(DirectoryGroup.objects.filter(tenant_id=user.tenant_id, object_guid__in=wanted)
                   .values_list("object_guid", "pk"))
        DirectoryGroupMembership.objects.filter(user=user).exclude(group_id__in=ids.values()).delete()
        DirectoryGroupMembership.objects.bulk_create(
            [DirectoryGroupMembership(user=user, group_id=pk) for pk in ids.values()], ignore_conflicts=True)
        if user.groups_state != state:
            User.objects.filter(pk=user.pk).update(groups_state=state)
            user.groups_state = state


def _groups_upsert(*, tenant_id, wanted: dict[str, tuple[str, str]]) -> None:
    """The tenant's groups by objectGUID, created or renamed as reported (names and DNs change, GUIDs do not)."""
    known = {g.object_guid: g for g in DirectoryGroup.objects.filter(tenant_id=tenant_id, object_guid__in=wanted)}
    now = timezone.now()
    DirectoryGroup.objects.bulk_create(
        [DirectoryGroup(tenant_id=tenant_id, object_guid=guid, name=name, dn=dn, updated_at=now)
         for guid, (name, dn) in wanted.items() if guid not in known], ignore_conflicts=True)
    for guid, group in known.items():
        if (group.name, group.dn) != wanted[guid]:
            group.name, group.dn = wanted[guid]
            group.updated_at = now
            group.save(update_fields=["name", "dn", "updated_at"])
