"""``{% signin_branding as brand %}``: the company branding of the tenant this sign-in is for, once the username
step has said which (branding/templates/branding/signin.html, included by the sign-in pages' base template)."""

from __future__ import annotations

import asyncio

from django import template
from django.urls import reverse

from branding.selectors import SigninBranding, signin_branding
from signin.services.names import UsernameRefused, username_canonical
from signin.views import MFA_SESSION_KEY, SESSION_KEY
from tenant.selectors import tenant_for_username

register = template.Library()


def _signin_tenant_id(request) -> str | None:
    """The tenant of the sign-in under way: the half-done one waiting for its second factor, the one past its
    username step, or the signed-in user's. None on the username page: there the tenant is not known yet (and
    a sign-in begun earlier in this browser must not brand the page of the next)."""
    # By path, not by resolver_match: signin.consumers serves the sign-in pages without resolving a URL.
    if request.path_info == reverse("signin:username"):
        return None
    session = request.session
    pending = session.get(MFA_SESSION_KEY)
    if pending and pending.get("tenant_id"):
        return pending["tenant_id"]
    state = session.get(SESSION_KEY)
    if state and state.get("username"):
        try:
            tenant = tenant_for_username(username=username_canonical(typed=state["username"]))
        except UsernameRefused:  # the username step refuses such a name; nothing to brand
            return None
        return str(tenant.pk) if tenant is not None else None
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
