"""RequestedAuthnContext, read by its comparison: which classes the portal may state, and which one it states for a
session (no database: the rule alone; the pages and a strict SP in test_sso.py)."""

from __future__ import annotations

import pytest

from samlidp.services.idp import authn_context_stated, authn_contexts_acceptable

AC = "urn:oasis:names:tc:SAML:2.0:ac:classes:"


@pytest.mark.parametrize(("classes", "comparison", "password_only", "with_mfa"), [
    (["PasswordProtectedTransport"], "exact", "PasswordProtectedTransport", "PasswordProtectedTransport"),
    (["MobileTwoFactorContract"], "exact", None, "MobileTwoFactorContract"),
    (["Smartcard", "PasswordProtectedTransport"], "exact", "PasswordProtectedTransport", "PasswordProtectedTransport"),
    (["Password"], "minimum", "PasswordProtectedTransport", "MobileTwoFactorContract"),
    (["PasswordProtectedTransport"], "better", None, "MobileTwoFactorContract"),
    (["PasswordProtectedTransport"], "maximum", "PasswordProtectedTransport", "PasswordProtectedTransport"),
    (["unspecified"], "maximum", "unspecified", "unspecified"),
])
def test_the_class_stated_is_the_strongest_the_session_meets_of_those_acceptable(classes, comparison, password_only,
                                                                               with_mfa):
    acceptable = authn_contexts_acceptable(classes=[AC + name for name in classes], comparison=comparison)
    for mfa, expected in ((False, password_only), (True, with_mfa)):
        assert authn_context_stated(acceptable=acceptable, mfa=mfa) == (AC + expected if expected else None)


@pytest.mark.parametrize(("classes", "comparison"), [
    (["Smartcard"], "exact"), (["Kerberos"], "minimum"), (["MobileTwoFactorContract"], "better"), ([], "exact"),
])
def test_a_context_the_portal_never_meets_has_nothing_acceptable(classes, comparison):
    assert authn_contexts_acceptable(classes=[AC + name for name in classes], comparison=comparison) == ()
