"""The change page for expired and must-change passwords, with the agents faked at the hand-off: the form checks
before any agent, the offer only where an agent can make the change, the same path and record as a sign-in.
Against the real DC and pta-agent: tests/integration/test_password_change.py."""

import uuid

import pytest
from django.test import Client
from pta_protocol import Outcome

from agents.services.dispatch import Validation
from signin.forms import PasswordChangeForm
from signin.models import SignInEvent
from signin.services import attempt
from signin.services.attempt import MAX_PASSWORD_LENGTH
from tests.fixtures.http import found

pytestmark = pytest.mark.django_db(transaction=True)
UPN = "erin@alpha.example.test"
OLD, NEW = "Change!Me-N0w", "Brand\u00a0New!Pa55"
NEXT = "/authorize/?client_id=x"


def change_form(current=OLD, new=NEW, confirm=NEW) -> PasswordChangeForm:
    return PasswordChangeForm({"current_password": current, "new_password": new, "confirm_password": confirm})


def test_the_form_takes_passwords_as_typed():
    form = change_form(current=" spaced ", new=" New Pa55 ", confirm=" New Pa55 ")
    assert form.is_valid()
    assert form.cleaned_data["current_password"] == " spaced " and form.cleaned_data["new_password"] == " New Pa55 "


@pytest.mark.parametrize(("fields", "field"), [
    ({"confirm": "Another!Pa55"}, "confirm_password"),
    ({"new": "x" * (MAX_PASSWORD_LENGTH + 1), "confirm": "x" * (MAX_PASSWORD_LENGTH + 1)}, "new_password"),
    ({"current": "x" * (MAX_PASSWORD_LENGTH + 1)}, "current_password"),
    ({"new": "New\x00Pa55", "confirm": "New\x00Pa55"}, "new_password"),
    ({"current": ""}, "current_password"),
    ({"new": "", "confirm": ""}, "new_password"),
])
def test_the_form_refuses_before_any_agent(fields, field):
    form = change_form(**fields)
    assert not form.is_valid() and field in form.errors


class FakeAgents:
    """The hand-off, faked: what the directory answers, and what was asked of it."""

    def __init__(self, monkeypatch, *, can_change: bool) -> None:
        self.can_change = can_change
        self.changes: list[tuple[str, str, str]] = []
        self.change_answer = Validation(
            outcome=Outcome.PASSWORD_CHANGED, request_id=uuid.uuid4().hex, domains=("alpha.example.test",),
            user={"object_guid": str(uuid.uuid4()), "upn": UPN, "display_name": "Erin", "mail": ""})

        async def password_validate(*, tenant_id, domain, username, password, hint=None):
            return Validation(outcome=Outcome.PASSWORD_MUST_CHANGE, request_id=uuid.uuid4().hex, ad_subcode="773")

        async def password_change(*, tenant_id, domain, username, current_password, new_password):
            self.changes.append((username, current_password, new_password))
            return self.change_answer

        async def password_change_available(*, tenant_id, domain):
            return self.can_change

        monkeypatch.setattr(attempt, "password_validate", password_validate)
        monkeypatch.setattr(attempt, "password_change", password_change)
        monkeypatch.setattr(attempt, "password_change_available", password_change_available)
        monkeypatch.setattr("signin.views.password_change_available", password_change_available)


@pytest.fixture
def tenant(tenant_factory):
    return tenant_factory("Alpha Corp", ["alpha.example.test"])


def token(response) -> str:
    return found(r'name="csrfmiddlewaretoken" value="([^"]+)"', response.content.decode())


def must_change(client: Client):
    """The username and password steps, answered 773."""
    page = client.get("/login/", {"next": NEXT})
    client.post("/login/", {"username": UPN, "csrfmiddlewaretoken": token(page), "next": NEXT})
    page = client.get("/login/password/")
    return client.post("/login/password/", {"password": OLD, "csrfmiddlewaretoken": token(page)})


def post_change(client: Client, **fields):
    page = client.get("/login/password/change/")
    data = {"current_password": OLD, "new_password": NEW, "confirm_password": NEW, **fields}
    return client.post("/login/password/change/", {**data, "csrfmiddlewaretoken": token(page)})


def test_changed_the_sign_in_goes_on_as_after_a_success(tenant, monkeypatch):
    agents = FakeAgents(monkeypatch, can_change=True)
    client = Client()
    answer = must_change(client)
    # Straight to the change form, as Entra ID and Okta do: not an error under an empty password box.
    assert answer.status_code == 302 and answer["Location"] == "/login/password/change/"
    assert answer["PTA-Outcome"] == "password_must_change"
    page = client.get("/login/password/change/")
    assert page.status_code == 200 and b'name="confirm_password"' in page.content
    assert page["PTA-Outcome"] == "password_must_change"
    assert b"asks you to choose a new password before you sign in" in page.content
    done = post_change(client)
    assert done.status_code == 302 and done["Location"] == NEXT and done["PTA-Outcome"] == "success"
    assert agents.changes == [(UPN, OLD, NEW)]
    assert client.get("/login/done/")["PTA-Outcome"] == "success"  # logged in
    change = SignInEvent.objects.get(password_change=True)
    assert change.user is not None
    assert (change.outcome, change.user.upn, change.detail) == ("success", UPN, "")


def test_a_mismatch_or_an_over_long_input_never_reaches_an_agent(tenant, monkeypatch):
    agents = FakeAgents(monkeypatch, can_change=True)
    client = Client()
    must_change(client)
    mismatch = post_change(client, confirm_password="Other!Pa55")
    assert mismatch.status_code == 400 and b"don&#x27;t match" in mismatch.content
    too_long = post_change(client, new_password="x" * 600, confirm_password="x" * 600)
    assert too_long.status_code == 400
    assert agents.changes == [] and not SignInEvent.objects.filter(password_change=True).exists()


def test_a_policy_refusal_shows_the_directorys_reason_and_is_recorded(tenant, monkeypatch):
    agents = FakeAgents(monkeypatch, can_change=True)
    agents.change_answer = Validation(outcome=Outcome.PASSWORD_REJECTED, request_id=uuid.uuid4().hex,
                                      ad_subcode="52d", detail="history: the password was already used!")
    client = Client()
    must_change(client)
    refused = post_change(client)
    assert refused["PTA-Outcome"] == "password_rejected"
    assert b"You have used it before." in refused.content and b"the password was already used!" in refused.content
    record = SignInEvent.objects.get(password_change=True)
    assert (record.outcome, record.ad_subcode, record.detail, record.user) == ("password_rejected", "52d",
                                                                               "history", None)


def test_a_wrong_current_password_counts_towards_lockout(tenant, monkeypatch):
    agents = FakeAgents(monkeypatch, can_change=True)
    agents.change_answer = Validation(outcome=Outcome.INVALID_CREDENTIALS, request_id=uuid.uuid4().hex,
                                      ad_subcode="56")
    client = Client()
    must_change(client)
    for _ in range(tenant.lockout_threshold):
        assert post_change(client)["PTA-Outcome"] == "invalid_credentials"
    assert post_change(client)["PTA-Outcome"] == "cloud_locked"
    assert len(agents.changes) == tenant.lockout_threshold


def test_without_an_agent_that_can_change_it_the_helpdesk_and_no_agent(tenant, monkeypatch):
    agents = FakeAgents(monkeypatch, can_change=False)
    client = Client()
    answer = must_change(client)
    assert answer.status_code == 200 and b"You must change your password." in answer.content
    # What to do next instead of a password form: the helpdesk (no contact set: the generic words).
    assert b'id="helpdesk-hint"' in answer.content and b'name="password"' not in answer.content
    assert b'name="new_password"' not in answer.content
    page = client.get("/login/password/change/")
    assert page["PTA-Outcome"] == "password_must_change" and b"helpdesk" in page.content
    assert b'name="new_password"' not in page.content
    forced = client.post("/login/password/change/", {"current_password": OLD, "new_password": NEW,
                                                     "confirm_password": NEW,
                                                     "csrfmiddlewaretoken": token(client.get("/login/"))})
    assert b'id="helpdesk-hint"' in forced.content
    assert agents.changes == [] and not SignInEvent.objects.filter(password_change=True).exists()


def test_the_change_page_needs_an_expired_or_must_change_answer_first(tenant, monkeypatch):
    agents = FakeAgents(monkeypatch, can_change=True)
    client = Client()
    assert client.get("/login/password/change/")["Location"] == "/login/"
    page = client.get("/login/")
    client.post("/login/", {"username": UPN, "csrfmiddlewaretoken": token(page)})
    assert client.get("/login/password/change/")["Location"] == "/login/"
    assert agents.changes == []
