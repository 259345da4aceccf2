"""Reads of the company branding: what the sign-in pages show for a tenant, and a logo by its digest."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import reverse

from branding.models import Branding
from tenant.routing import routes


@dataclass(frozen=True)
class SigninBranding:
    tenant_name: str
    accent_colour: str
    signin_text: str
    logo_url: str
    logo_width: int
    logo_height: int


def signin_branding(*, tenant_id) -> SigninBranding | None:
    """The tenant's branding as the sign-in pages show it, or None (no tenant, nothing set: the portal's look).
    Every sign-in page asks: a portal node remembers each tenant's answer as it remembers routes, and forgets it
    when any branding, tenant or domain is saved or deleted, on every node (tenant/routing.py; branding/signals.py).
    Elsewhere one indexed read without the logo's bytes (the page names the logo; the browser fetches it once)."""
    if not tenant_id:
        return None
    return routes.remembered(("branding", str(tenant_id)), lambda: _signin_branding_read(tenant_id))


def _signin_branding_read(tenant_id) -> SigninBranding | None:
    row = (Branding.objects.filter(tenant_id=tenant_id)
           .values("tenant__name", "accent_colour", "signin_text", "logo_sha256", "logo_width", "logo_height")
           .first())
    if row is None or not (row["accent_colour"] or row["signin_text"] or row["logo_sha256"]):
        return None
    return SigninBranding(
        tenant_name=row["tenant__name"], accent_colour=row["accent_colour"], signin_text=row["signin_text"],
        logo_url=logo_url(row["logo_sha256"]) if row["logo_sha256"] else "",
        logo_width=row["logo_width"], logo_height=row["logo_height"])


def logo_url(sha256: str) -> str:
    return reverse("branding-logo", args=[sha256])


def logo_png(*, sha256: str) -> bytes | None:
    """The stored PNG whose SHA-256 is ``sha256`` (any tenant's: the same bytes are the same logo)."""
    data = Branding.objects.filter(logo_sha256=sha256).exclude(logo=b"").values_list("logo", flat=True).first()
    return bytes(data) if data is not None else None
