"""What the sign-in pages tell a person who cannot sign in: the tenant's helpdesk contact and help text
(``Tenant.helpdesk_contact``, ``Tenant.help_text``, set by its administrator in the admin console).

Both are the administrator's free text: the templates escape them, and the contact becomes a link only when it
is an http(s) URL (``href`` as typed), an e-mail address (``mailto:``) or a phone number (``tel:``, digits
only). Anything else (``javascript:…`` included, which the model refuses anyway) is shown as text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, URLValidator

from tenant.models import Tenant

_url = URLValidator(schemes=["http", "https"])
_email = EmailValidator()
_PHONE = re.compile(r"^(?:tel:)?\s*(\+?[0-9][0-9 ()./-]{4,30})$", re.IGNORECASE)
_MAILTO = re.compile(r"^mailto:", re.IGNORECASE)


@dataclass(frozen=True)
class HelpdeskContact:
    text: str
    href: str = ""  # empty: shown as text


def helpdesk_contact(*, tenant: Tenant | None) -> HelpdeskContact | None:
    """The tenant's helpdesk contact as the pages show it, or None when it has none."""
    text = (tenant.helpdesk_contact if tenant is not None else "").strip()
    if not text:
        return None
    try:
        _url(text)
    except ValidationError:
        pass
    else:
        return HelpdeskContact(text, href=text)
    address = _MAILTO.sub("", text)
    try:
        _email(address)
    except ValidationError:
        pass
    else:
        return HelpdeskContact(address, href=f"mailto:{address}")
    if phone := _PHONE.match(text):
        number = phone.group(1)
        return HelpdeskContact(number, href="tel:" + re.sub(r"[^0-9+]", "", number))
    return HelpdeskContact(text)


def help_context(*, tenant: Tenant | None) -> dict:
    """The template variables of the help link's page and of the pages that say what to do next."""
    return {"helpdesk": helpdesk_contact(tenant=tenant),
            "help_text": (tenant.help_text if tenant is not None else "").strip()}
