"""Writes of the company branding."""

from __future__ import annotations

from django.db import transaction

from branding.images import Logo
from branding.models import Branding
from tenant.models import Tenant


@transaction.atomic
def branding_set(*, tenant: Tenant, accent_colour: str = "", signin_text: str = "", logo: Logo | None = None,
                 remove_logo: bool = False, commit: bool = True) -> Branding:
    """The tenant's branding as given: colour and text replace what was there (empty: the default); a new
    ``logo`` replaces the old, ``remove_logo`` takes it away, neither keeps it. ValidationError for a colour or a
    text the sign-in pages would not show (branding/models.py). ``commit=False`` validates only."""
    branding = Branding.objects.select_for_update().filter(tenant=tenant).first() or Branding(tenant=tenant)
    branding.accent_colour, branding.signin_text = accent_colour, signin_text
    if logo is not None:
        branding.logo, branding.logo_sha256 = logo.png, logo.sha256
        branding.logo_width, branding.logo_height = logo.width, logo.height
    elif remove_logo:
        branding.logo, branding.logo_sha256, branding.logo_width, branding.logo_height = b"", "", 0, 0
    branding.full_clean()
    if commit:
        branding.save()
    return branding
