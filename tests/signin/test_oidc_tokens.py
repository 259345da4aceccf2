"""The provider's revocation rules and their inputs, without a server: PKCE values (RFC 7636), which application
an RP-initiated logout names (signin/services/logout.py), what a logout revokes and what a replayed
authorization code revokes (signin/services/oauth_tokens.py), and what an ID token from a refresh repeats. End to
end: tests/integration/test_oidc_hardening.py."""

import base64
import hashlib
import json
import time
import uuid
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import Client, override_settings
from django.utils import timezone
from jwcrypto import jwk, jwt
from oauth2_provider.exceptions import ClientIdMissmatch, InvalidIDTokenError, InvalidOIDCClientError
from oauth2_provider.models import AccessToken, IDToken, RefreshToken
from oauth2_provider.settings import oauth2_settings

from applications.services import application_register
from signin.models import IdTokenAuthTime
from signin.services.logout import logout_request, logout_return_allowed
from signin.services.oauth_tokens import (
    _code_key,
    application_tokens_revoke,
    authorization_code_tokens_record,
    authorization_code_tokens_revoke,
    code_record_seconds,
    pkce_value_well_formed,
)
from tenant.models import User

ISSUER = "https://portal.test.example"


def test_pkce_values_are_43_to_128_unreserved_characters():
    assert pkce_value_well_formed("a" * 43) and pkce_value_well_formed("A-z0.9_~" * 16)
    for value in (None, "", "a" * 42, "a" * 129, "a" * 42 + "+", "a" * 42 + "=", "a" * 42 + "/", "a" * 42 + " ",
                  "a" * 42 + "é"):
        assert not pkce_value_well_formed(value), value


# --- which application a logout names ------------------------------------------------------------------

def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def id_token(pem: str, *, aud, iss: str = ISSUER, expired: bool = False, sub: str = "someone") -> str:
    key = jwk.JWK.from_pem(pem.encode())
    now = int(time.time())
    token = jwt.JWT(header={"alg": "RS256", "kid": key.thumbprint()},
                    claims={"iss": iss, "aud": aud, "sub": sub, "jti": str(uuid.uuid4()), "iat": now - 7200,
                            "exp": now - 3600 if expired else now + 3600})
    token.make_signed_token(key)
    return token.serialize()


def logout_application(**request):
    return logout_request(**request).application


@pytest.fixture
def web(tenant_a):
    application, _ = application_register(tenant=tenant_a, name="Wiki", redirect_uris=["https://wiki.alpha.test/cb"])
    return application


def test_client_id_or_the_hints_audience_names_the_application_expired_or_not(web):
    active = oauth2_settings.OIDC_RSA_PRIVATE_KEY
    assert logout_application(id_token_hint=None, client_id=web.client_id, issuer=ISSUER) == web
    assert logout_application(id_token_hint=id_token(active, aud=web.client_id), client_id=None, issuer=ISSUER) == web
    expired = id_token(active, aud=web.client_id, expired=True)
    assert logout_application(id_token_hint=expired, client_id=web.client_id, issuer=ISSUER) == web
    assert logout_application(id_token_hint=None, client_id=None, issuer=ISSUER) is None


@pytest.mark.parametrize("hint", [
    lambda app: id_token(_pem(), aud=app.client_id),  # not signed by this portal
    lambda app: id_token(oauth2_settings.OIDC_RSA_PRIVATE_KEY, aud=app.client_id, iss="https://other.test"),
    lambda app: id_token(oauth2_settings.OIDC_RSA_PRIVATE_KEY, aud=[app.client_id, "x"]),
    lambda app: "not-a-token",
    lambda app: "e30.e30.",  # alg none
])
def test_a_hint_this_portal_did_not_sign_for_itself_is_refused(web, hint):
    with pytest.raises(InvalidIDTokenError):
        logout_application(id_token_hint=hint(web), client_id=None, issuer=ISSUER)


def test_a_hint_for_another_client_or_an_unknown_client_is_refused(web, tenant_a):
    other, _ = application_register(tenant=tenant_a, name="Other", redirect_uris=["https://other.alpha.test/cb"])
    hint = id_token(oauth2_settings.OIDC_RSA_PRIVATE_KEY, aud=web.client_id)
    with pytest.raises(ClientIdMissmatch):
        logout_application(id_token_hint=hint, client_id=other.client_id, issuer=ISSUER)
    with pytest.raises(InvalidOIDCClientError):
        logout_application(id_token_hint=None, client_id="no-such-client", issuer=ISSUER)


def test_a_retired_key_still_published_names_the_application(web):
    retired = _pem()
    hint = id_token(retired, aud=web.client_id)
    with pytest.raises(InvalidIDTokenError):
        logout_application(id_token_hint=hint, client_id=None, issuer=ISSUER)
    with override_settings(OAUTH2_PROVIDER={**oauth2_settings.user_settings,
                                            "OIDC_RSA_PRIVATE_KEYS_INACTIVE": [retired]}):
        assert logout_application(id_token_hint=hint, client_id=None, issuer=ISSUER) == web


@pytest.mark.django_db
def test_the_browser_goes_back_only_from_a_session_with_a_hint_of_that_application_for_its_user(web, tenant_a):
    user = User.objects.create_user("ann@alpha.example.test", tenant=tenant_a)
    key = oauth2_settings.OIDC_RSA_PRIVATE_KEY
    mine = id_token(key, aud=web.client_id, sub=str(user.subject), expired=True)

    def back(*, user, **request) -> bool:
        return logout_return_allowed(request=logout_request(issuer=ISSUER, **request), user=user)

    assert back(user=user, id_token_hint=mine, client_id=web.client_id)
    assert back(user=user, id_token_hint=mine, client_id=None)
    assert not back(user=None, id_token_hint=mine, client_id=web.client_id)  # nobody signed in
    assert not back(user=user, id_token_hint=None, client_id=web.client_id)  # no hint
    assert not back(user=user, id_token_hint=id_token(key, aud=web.client_id), client_id=None)  # someone else's


# --- what is revoked -----------------------------------------------------------------------------------

def tokens(user, application, *, family=None):
    """An ID token, an access token and its refresh token, as the code flow leaves them."""
    expires = timezone.now() + timedelta(hours=1)
    raw = uuid.uuid4().hex
    id_row = IDToken.objects.create(user=user, application=application, expires=expires, scope="openid")
    access = AccessToken.objects.create(user=user, application=application, token=raw, expires=expires,
                                        scope="openid", id_token=id_row)
    refresh = RefreshToken.objects.create(user=user, application=application, token=uuid.uuid4().hex,
                                          access_token=access, token_family=family or uuid.uuid4())
    return raw, access, refresh, id_row


def alive(access, refresh, id_row) -> tuple[bool, bool, bool]:
    return (AccessToken.objects.filter(pk=access.pk).exists(),
            RefreshToken.objects.filter(pk=refresh.pk, revoked__isnull=True).exists(),
            IDToken.objects.filter(pk=id_row.pk).exists())


@pytest.fixture
def users(tenant_a):
    return [User.objects.create_user(f"{name}@alpha.example.test", tenant=tenant_a) for name in ("judy", "ivan")]


def test_logout_revokes_the_users_tokens_at_that_application_only(web, tenant_a, users):
    judy, ivan = users
    other, _ = application_register(tenant=tenant_a, name="Other", redirect_uris=["https://other.alpha.test/cb"])
    at_web, elsewhere, someone_else = tokens(judy, web), tokens(judy, other), tokens(ivan, web)
    application_tokens_revoke(user=judy, application=web)
    assert alive(*at_web[1:]) == (False, False, False)
    assert alive(*elsewhere[1:]) == (True, True, True)
    assert alive(*someone_else[1:]) == (True, True, True)


def test_a_replayed_code_revokes_its_tokens_and_their_rotations(web, users, tenant_a):
    judy, ivan = users
    raw, access, refresh, id_row = tokens(judy, web)
    authorization_code_tokens_record(code="the-code", access_token=raw)
    rotated = tokens(judy, web, family=refresh.token_family)  # a refresh since: same family
    unrelated = tokens(judy, web)
    assert authorization_code_tokens_revoke(code="the-code") is True
    assert alive(access, refresh, id_row) == (False, False, False)
    assert alive(*rotated[1:]) == (False, False, False)
    assert alive(*unrelated[1:]) == (True, True, True)
    assert authorization_code_tokens_revoke(code="another-code") is False


def test_the_code_record_is_keyed_by_a_hash_and_outlives_the_access_token():
    assert "the-code" not in _code_key("the-code") and _code_key("the-code") != _code_key("the-codf")
    assert code_record_seconds() >= oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS


def test_the_framework_hooks_we_override_exist_and_a_missing_one_stops_start_up(monkeypatch):
    from signin import checks

    assert checks.oidc_hooks_present(None) == []
    monkeypatch.setitem(checks.HOOKS, "oauth2_provider.views.RPInitiatedLogoutView", ("renamed_do_logout",))
    assert [error.id for error in checks.oidc_hooks_present(None)] == ["signin.E001"]


# --- an ID token from a refresh ------------------------------------------------------------------------------

def test_an_id_token_from_a_refresh_repeats_the_sign_ins_auth_time_and_amr(tenant_a, users):
    """OpenID Connect Core 12.2: a refresh is no new sign-in; its ID token says when and how the one behind it was
    made (kept with the first ID token, signin.IdTokenAuthTime), and keeps them for the next refresh too."""
    app, secret = application_register(tenant=tenant_a, name="Wiki", redirect_uris=["https://wiki.alpha.test/cb"])
    judy = users[0]
    _, access, refresh, id_row = tokens(judy, app)
    signed_in = timezone.now().replace(microsecond=0) - timedelta(hours=3)
    IdTokenAuthTime.objects.create(id_token=id_row, auth_time=signed_in, amr=["pwd", "hwk", "mfa"])
    basic = base64.b64encode(f"{app.client_id}:{secret}".encode()).decode()

    def refreshed(token: str) -> tuple[dict, dict]:
        answer = Client().post("/token/", {"grant_type": "refresh_token", "refresh_token": token},
                               HTTP_AUTHORIZATION=f"Basic {basic}")
        assert answer.status_code == 200, answer.content[:300]
        body = json.loads(answer.content)
        payload = body["id_token"].split(".")[1]
        return body, json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    body, claims = refreshed(refresh.token)
    assert (claims["auth_time"], claims["amr"]) == (int(signed_in.timestamp()), ["pwd", "hwk", "mfa"])
    _, again = refreshed(body["refresh_token"])  # the refreshed tokens' own refresh
    assert (again["auth_time"], again["amr"]) == (claims["auth_time"], claims["amr"])


@pytest.mark.parametrize("session_amr", [None, ["pwd"]], ids=["session-without-amr", "session-with-amr"])
def test_the_authorize_urls_claims_parameter_cannot_set_the_id_tokens_amr_or_auth_time(
        tenant_a, tenant_admin_factory, session_amr):
    """The attack (found in review): a signed-in user adds ``claims={"pta_amr": ["hwk", "mfa"], …}`` to the
    authorize URL. oauthlib keeps that parameter as the grant's stored claims, where the portal keeps the
    session's sign-in time and methods: where the session had none, the URL's became the ID token's (and every
    refresh's). The portal's own values only, whatever the URL says."""
    from signin.services.authentication import AMR_KEY, AUTHENTICATED_AT_KEY

    user = tenant_admin_factory(tenant_a)
    app, secret = application_register(tenant=tenant_a, name="Payroll", redirect_uris=["http://127.0.0.1/cb"])
    basic = "Basic " + base64.b64encode(f"{app.client_id}:{secret}".encode()).decode()
    browser = Client(REMOTE_ADDR="192.0.2.90")
    browser.force_login(user, backend="signin.backends.PassThroughBackend")
    session = browser.session
    signed_in = int(time.time()) - 3600  # a password sign-in an hour ago
    session[AUTHENTICATED_AT_KEY] = signed_in
    if session_amr is None:
        session.pop(AMR_KEY, None)  # a session of a release that did not record amr
    else:
        session[AMR_KEY] = session_amr
    session.save()
    verifier = "v" * 64
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    forged = {"pta_amr": ["hwk", "mfa"], "pta_auth_time": int(time.time()) + 10}
    answer = browser.get("/authorize/?" + urlencode({
        "response_type": "code", "client_id": app.client_id, "redirect_uri": "http://127.0.0.1/cb",
        "scope": "openid", "code_challenge": challenge, "code_challenge_method": "S256",
        "claims": json.dumps(forged)}))
    assert answer.status_code == 302 and answer["Location"].startswith("http://127.0.0.1/cb?code="), answer
    code = parse_qs(urlsplit(answer["Location"]).query)["code"][0]
    token = Client().post("/token/", {"grant_type": "authorization_code", "code": code, "client_id": app.client_id,
                                      "redirect_uri": "http://127.0.0.1/cb", "code_verifier": verifier},
                          HTTP_AUTHORIZATION=basic)
    assert token.status_code == 200, token.content[:300]
    body = json.loads(token.content)
    payload = body["id_token"].split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims.get("amr") == session_amr  # None: no amr at all, never the URL's
    assert claims["auth_time"] == signed_in
    refreshed = Client().post("/token/", {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]},
                              HTTP_AUTHORIZATION=basic)
    payload = json.loads(refreshed.content)["id_token"].split(".")[1]
    assert json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))).get("amr") == session_amr
