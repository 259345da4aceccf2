"""The admin console shows a new registration token once, on the add view's answer page, and nowhere else:
not in a message (Django keeps those in a signed but readable cookie), not in a cache, not on a later page. Only
a POST of a form the page showed issues one, once: a reload of the answer page (the browser posts the form again)
issues nothing and shows nothing."""

import re

import pytest
from django.conf import settings
from django.contrib.messages import get_messages
from django.contrib.messages.storage.cookie import CookieStorage
from django.urls import reverse

from agents.models import RegistrationToken
from agents.services.registration import token_hash

ON_PAGE = re.compile(r'id="registration-token" value="(pta_[A-Za-z0-9_-]+)"')
TOKEN_LIKE = re.compile(r"pta_[A-Za-z0-9_-]{20,}")


@pytest.fixture
def admin_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def add_form(client) -> dict:
    """GET the add form, as the browser shows it: what its POST carries besides the fields typed."""
    page = client.get(reverse("admin:agents_registrationtoken_add"))
    assert page.status_code == 200
    return {"once_key": page.context["adminform"].form["once_key"].value()}


def issue(client, tenant, form: dict | None = None):
    """POST the add form as the tenant administrator's browser does (shown first, unless ``form`` was)."""
    return client.post(reverse("admin:agents_registrationtoken_add"),
                       {**(form if form is not None else add_form(client)),
                        "domains": [tenant.domains.get().pk], "ttl_seconds": "7200"})


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


def test_the_add_form_issues_nothing_until_posted(admin_client, tenant_a):
    for _ in range(3):
        page = admin_client.get(reverse("admin:agents_registrationtoken_add"))
        assert page.status_code == 200 and TOKEN_LIKE.search(page.content.decode()) is None
    assert RegistrationToken.objects.count() == 0


def test_a_reload_of_the_answer_page_issues_no_second_token_and_shows_none(admin_client, tenant_a):
    form = add_form(admin_client)
    raw = token_on_page(issue(admin_client, tenant_a, form))
    # The browser's reload posts the same form again.
    again = issue(admin_client, tenant_a, form)
    assert again.status_code == 302
    assert again["Location"] == reverse("admin:agents_registrationtoken_changelist")
    assert RegistrationToken.objects.count() == 1 and token_hash(raw) == RegistrationToken.objects.get().token_hash
    followed = admin_client.get(again["Location"])
    page = followed.content.decode()
    assert TOKEN_LIKE.search(page) is None
    assert "already issued its token" in page and 'class="warning"' in page


def test_a_post_without_a_shown_form_issues_nothing(admin_client, tenant_a):
    """A form posted from elsewhere (or a key made up) never got a key from this session's add page."""
    for form in ({}, {"once_key": "made-up"}):
        response = issue(admin_client, tenant_a, form)
        assert response.status_code == 302
    assert RegistrationToken.objects.count() == 0


def test_a_form_with_errors_keeps_its_key(admin_client, tenant_a):
    form = add_form(admin_client)
    invalid = admin_client.post(reverse("admin:agents_registrationtoken_add"),
                                {**form, "domains": [tenant_a.domains.get().pk], "ttl_seconds": "5"})
    assert invalid.status_code == 200 and RegistrationToken.objects.count() == 0
    token_on_page(issue(admin_client, tenant_a, form))  # corrected, the same form issues its token
    assert RegistrationToken.objects.count() == 1


def test_the_notice_is_a_success_and_names_the_token_by_its_end_only(admin_client, tenant_a):
    response = issue(admin_client, tenant_a)
    raw = token_on_page(response)
    page = response.content.decode()
    assert 'class="errornote"' not in page
    notices = re.findall(r'<li class="success">(.*?)</li>', page, re.S)
    assert len(notices) == 1 and f"…{raw[-4:]}" in notices[0] and raw not in notices[0]


def test_the_command_wraps_can_be_scrolled_by_keyboard_and_copied(admin_client, tenant_a):
    from django.contrib.staticfiles import finders

    response = issue(admin_client, tenant_a)
    page = response.content.decode()
    command = re.search(r'<pre id="register-command"([^>]*)>', page)
    assert command and 'tabindex="0"' in command.group(1) and "aria-labelledby=" in command.group(1)
    assert 'data-copy="register-command"' in page and 'data-copy="registration-token"' in page
    assert "<script>" not in page  # the copy buttons' script is a static file (no inline script)
    # One copy script for the console's pages that show a secret once (the token's, the client secret's).
    script, style = finders.find("tenant/console.js"), finders.find("agents/issued.css")
    assert script and style and "/static/tenant/console.js" in page and "/static/agents/issued.css" in page
    assert "navigator.clipboard" in open(script).read()
    assert "pre-wrap" in open(style).read()
