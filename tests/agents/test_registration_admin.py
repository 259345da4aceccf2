"""The admin console shows a new registration token once, on the add view's answer page, and nowhere else:
not in a message (Django keeps those in a signed but readable cookie), not in a cache, not on a later page."""

import re

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.urls import reverse

from agents.models import RegistrationToken
from agents.services.registration import token_hash

ON_PAGE = re.compile(r'<code id="registration-token">(pta_[A-Za-z0-9_-]+)</code>')
TOKEN_LIKE = re.compile(r"pta_[A-Za-z0-9_-]{20,}")


@pytest.fixture
def admin_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def issue(client, tenant):
    """POST the add form as the tenant administrator's browser does."""
    return client.post(reverse("admin:agents_registrationtoken_add"),
                       {"domains": [tenant.domains.get().pk], "ttl_seconds": "7200"})


def token_on_page(response) -> str:
    assert response.status_code == 200, f"{response.status_code} {response.get('Location', '')}"
    match = ON_PAGE.search(response.content.decode())
    assert match, "the answer page shows the new token"
    return match.group(1)


def test_the_answer_page_shows_a_valid_token_its_expiry_domains_and_command(admin_client, tenant_a):
    response = issue(admin_client, tenant_a)
    raw = token_on_page(response)
    stored = RegistrationToken.objects.get()
    assert token_hash(raw) == stored.token_hash  # the token on the page is the one that registers an agent
    assert stored.issued_by is not None and stored.issued_by.upn == "admin@alpha.example.test"
    assert stored.tenant == tenant_a and stored.usable
    assert {"admin/agents/registrationtoken/issued.html", "admin/base_site.html"} <= {
        template.name for template in response.templates}
    page = response.content.decode()
    assert "alpha.example.test" in page and str(stored.expires_at.year) in page
    assert (f"pta-agent register --portal {settings.PTA_PUBLIC_URL.rstrip('/')} --token {raw} "
            "--config /etc/pta-agent/agent.toml --ldap-url ldaps://dc.example:636") in page


def test_no_cookie_message_or_cache_keeps_the_token(admin_client, tenant_a):
    response = issue(admin_client, tenant_a)
    stored = RegistrationToken.objects.get()
    # Everything the browser or the server keeps after this answer, messages decoded as an attacker would.
    kept = [morsel.output() for morsel in response.cookies.values()]
    kept += [f"{name}: {value}" for name, value in response.headers.items()]
    kept += [morsel.value for morsel in admin_client.cookies.values()]
    messages_cookie = response.cookies.get(CookieStorage.cookie_name)
    if messages_cookie is not None and messages_cookie.value:
        # Decoded with the storage's own (private) _decode, which the stubs leave out.
        decoded = CookieStorage(response.wsgi_request)._decode(messages_cookie.value)  # type: ignore[attr-defined]
        kept += [str(m) for m in decoded or []]
    kept += [str(m) for m in get_messages(response.wsgi_request)]
    kept += [repr(dict(admin_client.session.items()))]
    leaked = [t for t in TOKEN_LIKE.findall("\n".join(kept)) if token_hash(t) == stored.token_hash]
    assert leaked == []
    assert "no-store" in response.get("Cache-Control", "")


def test_the_token_is_never_shown_again(admin_client, tenant_a):
    raw = token_on_page(issue(admin_client, tenant_a))
    stored = RegistrationToken.objects.get()
    for url in (reverse("admin:agents_registrationtoken_changelist"),
                reverse("admin:agents_registrationtoken_change", args=[stored.pk]), reverse("admin:index")):
        later = admin_client.get(url)
        assert later.status_code == 200
        assert raw not in later.content.decode()
    assert f"…{raw[-4:]}" in admin_client.get(reverse("admin:agents_registrationtoken_changelist")).content.decode()


def test_the_history_names_the_issued_token(admin_client, tenant_a):
    from django.contrib.admin.models import LogEntry

    token_on_page(issue(admin_client, tenant_a))
    entry, stored = LogEntry.objects.get(), RegistrationToken.objects.get()
    assert entry.object_id == str(stored.pk) and entry.object_repr == f"token …{stored.hint}"
