"""The signed-in user's own security page (``/login/security/``): their passkeys, named, with when each was last
used; add, rename, remove. Changes need a fresh second factor: one given in this session within
FRESH_FACTOR_SECONDS (a sign-in's, or asked again on this page), or, for a user with no factor at all, a sign-in
that recent. Thin: the ceremonies and the changes are signin/services/passkeys.py's."""

from __future__ import annotations

import json
import logging
import time
from typing import cast

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST

from signin.forms import MfaCodeForm
from signin.services.authentication import (
    AUTHENTICATED_AT_KEY,
    FACTOR_AT_KEY,
    PASSKEY_AT_KEY,
    session_factor_given,
)
from signin.services.mfa import mfa_code_verify, recovery_codes_exist, totp_device_confirmed
from signin.services.passkeys import (
    DEFAULT_NAME,
    PasskeyRefused,
    passkey_authenticate,
    passkey_authentication_options,
    passkey_exists,
    passkey_register,
    passkey_registration_options,
    passkey_remove,
    passkey_rename,
    passkeys_of,
)
from tenant.models import User

logger = logging.getLogger(__name__)

FRESH_FACTOR_SECONDS = 600
PAGE = "/login/security/"


def _user(request: HttpRequest) -> User:
    return cast(User, request.user)  # login_required let only a signed-in user in


def _has_factor(user) -> bool:
    return passkey_exists(user=user) or totp_device_confirmed(user=user) is not None


def _fresh(request: HttpRequest) -> bool:
    """A second factor given here lately: a passkey for a user who has one (a code relayed by a phishing page must
    not let its relayer add a passkey of their own), else a code; for a user without any, a sign-in this recent."""
    user = _user(request)
    key = PASSKEY_AT_KEY if passkey_exists(user=user) else FACTOR_AT_KEY if _has_factor(user) else AUTHENTICATED_AT_KEY
    at = request.session.get(key)
    return at is not None and time.time() - float(at) <= FRESH_FACTOR_SECONDS


def _render(request: HttpRequest, *, error: str = "", notice: str = "", status: int = 200) -> HttpResponse:
    user = _user(request)
    context: dict = {"username": user.upn, "error": error, "notice": notice, "fresh": _fresh(request)}
    if context["fresh"]:
        context.update(passkeys=passkeys_of(user=user), passkey_default_name=DEFAULT_NAME,
                       passkey_create_options=json.loads(passkey_registration_options(session=request.session,
                                                                                      user=user)))
    else:
        has_passkey = passkey_exists(user=user)
        context.update(form=MfaCodeForm(), codes_allowed=not has_passkey and (
            totp_device_confirmed(user=user) is not None or recovery_codes_exist(user=user)))
        if has_passkey:
            context["passkey_options"] = json.loads(passkey_authentication_options(session=request.session,
                                                                                   user=user))
    return render(request, "signin/security.html", context, status=status)


@never_cache
@login_required(login_url="/login/")
@csrf_protect
@sensitive_post_parameters("otp")
@require_http_methods(["GET", "POST"])
def security_page(request: HttpRequest) -> HttpResponse:
    """GET: the page. POST: a code (authenticator app or recovery code) to make the factor fresh."""
    if request.method == "GET":
        return _render(request)
    if passkey_exists(user=_user(request)):
        return _render(request, error="Use one of your passkeys to change them.", status=400)
    check = mfa_code_verify(user=_user(request), token=request.POST.get("otp", ""))
    if not check.ok:
        return _render(request, error="That code didn't work. Try again.", status=400)
    session_factor_given(session=request.session, passkey=False)
    return HttpResponseRedirect(PAGE)


@never_cache
@login_required(login_url="/login/")
@csrf_protect
@require_POST
def security_verify_passkey(request: HttpRequest) -> HttpResponse:
    try:
        passkey_authenticate(session=request.session, user=_user(request),
                             credential_json=request.POST.get("credential", ""))
    except PasskeyRefused as refused:
        logger.warning("passkey refused on the security page of %s: %s", _user(request).upn, refused)
        return _render(request, error="The passkey was not accepted. Try again.", status=400)
    session_factor_given(session=request.session, passkey=True)
    return HttpResponseRedirect(PAGE)


@never_cache
@login_required(login_url="/login/")
@csrf_protect
@require_POST
def security_passkey_add(request: HttpRequest) -> HttpResponse:
    if not _fresh(request):
        return _render(request, error="Verify it's you first.", status=403)
    try:
        device = passkey_register(session=request.session, user=_user(request),
                                  credential_json=request.POST.get("credential", ""),
                                  name=request.POST.get("name", ""))
    except PasskeyRefused as refused:
        logger.warning("passkey registration refused on the security page of %s: %s", _user(request).upn, refused)
        return _render(request, error="The passkey could not be added. Try again.", status=400)
    logger.info("passkey %r added by its user %s", device.name, _user(request).upn)
    return _render(request, notice=f"Passkey \u201c{device.name}\u201d added.")


@never_cache
@login_required(login_url="/login/")
@csrf_protect
@require_POST
def security_passkey_change(request: HttpRequest, device_id: int, action: str) -> HttpResponse:
    if action not in ("remove", "rename"):
        raise Http404
    if not _fresh(request):
        return _render(request, error="Verify it's you first.", status=403)
    if action == "remove":
        done = passkey_remove(user=_user(request), device_id=device_id)
        notice = "Passkey removed."
    else:
        done = passkey_rename(user=_user(request), device_id=device_id, name=request.POST.get("name", ""))
        notice = "Passkey renamed."
    if not done:  # not one of this user's passkeys
        return _render(request, error="No such passkey.", status=404)
    logger.info("passkey %s %s by its user %s", device_id, "removed" if action == "remove" else "renamed",
                _user(request).upn)
    return _render(request, notice=notice)
