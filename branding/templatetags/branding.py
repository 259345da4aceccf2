"""``{% signin_branding as brand %}``: the company branding of the tenant this sign-in is for, once the username
step has said which (branding/templates/branding/signin.html, included by the sign-in pages' base template)."""

from __future__ import annotations

import asyncio
import functools

from django import template
from django.urls import reverse

from branding.selectors import SigninBranding, signin_branding
from signin.selectors import signin_tenant_id

register = template.Library()


# The sign-in's steps after the username (and the page it ends on): the only pages that know whose sign-in this is.
BRANDED_PAGES = ("signin:password", "signin:password-change", "signin:mfa", "signin:mfa-enrol", "signin:done")


@functools.cache
def _branded_paths() -> frozenset[str]:
    return frozenset(reverse(name) for name in BRANDED_PAGES)


def _signin_tenant_id(request) -> str | None:
    """The tenant of the sign-in under way (as the username step routed its domain: kept in the session, no read),
    or the signed-in user's, on the steps after the username only. Not on the username page, the front page or
    the help page: there the tenant is not known yet, and a sign-in begun (and perhaps abandoned) earlier in this
    browser must not brand them."""
    # By path, not by resolver_match: signin.consumers serves the sign-in pages without resolving a URL.
    if request.path_info not in _branded_paths():
        return None
    if tenant_id := signin_tenant_id(session=request.session):
        return tenant_id
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated and user.tenant_id:
        return str(user.tenant_id)
    return None


def _on_event_loop() -> bool:
    """A page drawn on the event loop (an async view rendering in place) cannot read the database: it gets the
    portal's look rather than an error. The sign-in views draw their pages in worker threads."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@register.simple_tag(takes_context=True)
def signin_branding_for_page(context) -> SigninBranding | None:
    request = context.get("request")
    if request is None or not hasattr(request, "session") or _on_event_loop():
        return None
    return signin_branding(tenant_id=_signin_tenant_id(request))
