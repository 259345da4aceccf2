"""The sign-in pages' side of sealing in the browser (issue 28): the script runs only as published (its SRI hash in
the tag, in a header and in docs/SECURITY.md, all the same as the file's), under a Content Security Policy; a post of
envelopes that do not fit the sign-in's ticket is refused before any lockout count, agent or record."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from signin.models import SignInEvent
from signin.script import SCRIPT_HASH_HEADER, script_integrity

ROOT = Path(__file__).resolve().parents[2]


def test_the_scripts_hash_is_the_files_and_is_published_in_the_docs():
    file = ROOT / "signin" / "static" / "signin" / "signin.js"
    expected = "sha384-" + base64.b64encode(hashlib.sha384(file.read_bytes()).digest()).decode()
    assert script_integrity() == expected
    assert expected in (ROOT / "docs" / "SECURITY.md").read_text(), (
        f"docs/SECURITY.md publishes the sign-in script's hash: put {expected} in it")


@pytest.mark.django_db(transaction=True)
def test_the_pages_name_the_scripts_hash_and_forbid_any_other_script(client, tenant_a):
    page = client.get("/login/")
    assert page[SCRIPT_HASH_HEADER] == script_integrity()
    assert f'integrity="{script_integrity()}"' in page.content.decode()
    policy = dict(part.strip().split(" ", 1) for part in page["Content-Security-Policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'none'"
    assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"
    assert "<script>" not in page.content.decode()  # no inline script: the policy holds the page to the file


@pytest.mark.django_db(transaction=True)
def test_envelopes_without_the_sign_ins_ticket_are_refused_before_anything_counts(client, tenant_a):
    client.get("/login/")
    token = client.cookies["csrftoken"].value
    upn = "someone@alpha.example.test"
    assert client.post("/login/", {"username": upn, "csrfmiddlewaretoken": token}).status_code == 302
    password_page = client.get("/login/password/").content.decode()
    assert 'data-seal="password"' in password_page
    envelope = {"alg": "RSA-OAEP-256+A256GCM", "key": base64.b64encode(b"k" * 256).decode(),
                "nonce": base64.b64encode(b"n" * 12).decode(), "data": base64.b64encode(b"d" * 40).decode()}
    # No agent is connected, so the username step issued no ticket: whatever is posted fits none.
    forged = json.dumps({"request_id": "0" * 32, "envelopes": {"f" * 64: envelope}})
    answer = client.post("/login/password/", {"sealed": forged, "csrfmiddlewaretoken": token})
    assert answer.status_code == 400 and answer["PTA-Outcome"] == "session_expired"
    assert 'data-outcome="session_expired"' in answer.content.decode()
    assert not SignInEvent.objects.exists()  # no attempt: nothing counted, no agent asked, no record


@pytest.mark.django_db(transaction=True)
def test_with_no_agent_to_seal_for_the_page_is_told_to_post_the_password(client, tenant_a):
    client.get("/login/")
    token = client.cookies["csrftoken"].value
    client.post("/login/", {"username": "someone@alpha.example.test", "csrfmiddlewaretoken": token})
    answer = client.post("/login/password/seal/", {"kind": "password", "csrfmiddlewaretoken": token})
    assert answer.status_code == 200 and answer.json() == {"candidates": []}
    assert client.post("/login/password/seal/", {"kind": "other", "csrfmiddlewaretoken": token}).status_code == 400


@pytest.mark.django_db(transaction=True)
def test_a_cloud_account_of_the_domain_is_given_nothing_to_seal_to(client, tenant_a, tenant_admin_factory):
    """Its local password is the portal's to check: its page posts it (the seal endpoint says so); a directory name
    of the same domain gets its ticket at the username step (none here: no agent is connected)."""
    admin = tenant_admin_factory(tenant_a)
    client.get("/login/")
    token = client.cookies["csrftoken"].value
    for upn, ticketed in ((admin.upn, False), ("someone@alpha.example.test", True)):
        client.post("/login/", {"username": upn, "csrfmiddlewaretoken": token})
        assert ("seal" in client.session["pta_signin"]) is ticketed
        answer = client.post("/login/password/seal/", {"kind": "password", "csrfmiddlewaretoken": token})
        assert answer.json() == {"candidates": []}


@pytest.mark.django_db(transaction=True)
def test_a_name_in_a_domain_no_tenant_verified_posts_its_password(client):
    """A platform administrator or nobody: the portal checks the password, so the page is told to post it."""
    client.get("/login/")
    token = client.cookies["csrftoken"].value
    client.post("/login/", {"username": "root@nowhere.example.test", "csrfmiddlewaretoken": token})
    answer = client.post("/login/password/seal/", {"kind": "password", "csrfmiddlewaretoken": token})
    assert answer.status_code == 200 and answer.json() == {"candidates": []}
