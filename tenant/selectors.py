from dataclasses import dataclass

from django.db import connection

from tenant.locations import (
    IPNetwork,
    RangeError,
    address_in_ranges,
    address_normalised,
    ranges_parse,
    ranges_split,
)
from tenant.models import DirectoryGroup, DirectoryGroupMembership, Domain, GroupsState, Location, Tenant, User
from tenant.routing import routes


def tenant_for_username(*, username: str) -> Tenant | None:
    """The tenant that owns the username's domain, by verified domain only (remembered: tenant/routing.py)."""
    _, at, domain = username.rpartition("@")
    if not at or not domain:
        return None
    return routes.tenant(domain.strip().lower(), _tenant_by_verified_domain)


def _tenant_by_verified_domain(name: str) -> Tenant | None:
    found = Domain.objects.filter(name=name, verified=True).select_related("tenant").first()
    return found.tenant if found else None


def tenant_domain(*, tenant: Tenant, name: str) -> Domain | None:
    """The tenant's own claim on a domain name, verified or not."""
    return Domain.objects.filter(tenant=tenant, name=name.strip().lower()).select_related("tenant").first()


def cloud_account(*, upn: str) -> User | None:
    """An active cloud-only account (a platform administrator, a tenant's break-glass account) by its UPN."""
    return (User.objects.filter(upn=upn.strip().lower(), source=User.Source.CLOUD, is_active=True)
            .select_related("tenant").first())


def user_by_upn(*, upn: str, tenant: Tenant | None = None) -> User | None:
    """The account with this UPN (stored lower-case), its tenant loaded: ``tenant`` when it is the account's own
    (the routing one, already at hand), else read. One plain statement: this runs on every sign-in, and the
    ORM's compiled join with its ordering cost about four times the CPU of the query itself."""
    quote = connection.ops.quote_name  # the names are the model's own; the UPN is a parameter
    sql = f"SELECT * FROM {quote(User._meta.db_table)} WHERE {quote(User._meta.get_field('upn').column)} = %s"  # noqa: S608
    user = next(iter(User.objects.raw(sql, [upn])), None)
    if user is None:
        return None
    if tenant is not None and user.tenant_id == tenant.pk:
        user.tenant = tenant
    else:
        user.tenant  # noqa: B018 - read now, in the caller's thread: later readers may be on the event loop
    return user


@dataclass(frozen=True)
class LocationMatch:
    """The tenant's named location a client's address is in: its name and kind as they were at the sign-in."""

    name: str
    kind: str  # Location.Kind

    @property
    def blocked(self) -> bool:
        return self.kind == Location.Kind.BLOCKED

    @property
    def trusted(self) -> bool:
        return self.kind == Location.Kind.TRUSTED


def location_for_address(*, tenant: Tenant | None, ip: str) -> LocationMatch | None:
    """The tenant's location that holds ``ip`` (the client's address, as signin.services.client gives it), or
    None. When locations overlap, a blocked one wins over a trusted one (the safer reading of a conflict), then
    the first by name. No tenant (platform accounts) or no address: None."""
    if tenant is None or not ip:
        return None
    address = address_normalised(ip)
    if address is None:
        return None
    found: LocationMatch | None = None
    for name, kind, networks in routes.remembered(("locations", tenant.pk), lambda: _locations_read(tenant)):
        if not address_in_ranges(address, networks):
            continue
        if kind == Location.Kind.BLOCKED:
            return LocationMatch(name=name, kind=kind)
        found = found or LocationMatch(name=name, kind=kind)
    return found


def _locations_read(tenant: Tenant) -> tuple[tuple[str, str, tuple[IPNetwork, ...]], ...]:
    """The tenant's locations by name, their ranges parsed: what every sign-in of the tenant matches its address
    against, remembered with the routes (tenant/signals.py forgets them when a location changes)."""
    read = []
    for name, kind, ranges in Location.objects.filter(tenant=tenant).order_by("name").values_list(
            "name", "kind", "ranges"):
        try:
            read.append((name, kind, tuple(ranges_parse(ranges_split(ranges)))))
        except RangeError:  # stored before a rule tightened: a row that cannot be read matches nothing
            continue
    return tuple(read)


def user_directory_groups(*, user: User) -> list[DirectoryGroup]:
    """The user's transitive directory groups as of their last sign-in, by name."""
    return list(DirectoryGroup.objects.filter(memberships__user=user).order_by("name", "object_guid"))


def user_group_names(*, user: User) -> list[str]:
    """The sAMAccountNames of the user's groups (for tokens and assertions: OpenID Connect, SAML)."""
    return [group.name for group in user_directory_groups(user=user)]


def user_in_group(*, user: User, group: DirectoryGroup) -> bool:
    """Whether the user is a member of the group, directly or through nested groups (one indexed lookup)."""
    return DirectoryGroupMembership.objects.filter(user=user, group=group).exists()


def user_groups_complete(*, user: User) -> bool:
    """Whether the stored groups are all of the user's (not truncated, not absent)."""
    return user.groups_state == GroupsState.CURRENT
