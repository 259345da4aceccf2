"""The audit trail: every administrative change recorded with who, when, from where and through what, before and
after, never a secret; read-only in the console, each tenant administrator their own tenant's only; streamed as
JSON lines and exported by time range; purged after its retention period."""

import datetime
import io
import json
import os
import socket
import stat

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice

from agents.services.registration import registration_token_issue
from applications.models import Application
from health.models import Incident
from signin.services.records import signin_event_record
from tenant.models import Location, User
from tests.fixtures.http import shown_form
from trail.context import Actor, Through, actor_set
from trail.models import AuditEvent
from trail.tasks import purge_audit_events

CONSOLE_PASSWORD = "Console-pa55word-never-in-the-trail"


def trail_text() -> str:
    """Everything the trail holds, as one text to search for secrets."""
    return json.dumps([{k: v for k, v in row.items()} for row in AuditEvent.objects.values()], default=str)


@pytest.fixture
def admin_a(tenant_a, tenant_admin_factory):
    return tenant_admin_factory(tenant_a)


@pytest.fixture
def console_a(client, admin_a):
    client.force_login(admin_a)
    return client


@pytest.fixture
def stream_file(tmp_path, settings):
    path = tmp_path / "audit.jsonl"
    settings.PTA_AUDIT_STREAM = f"file:{path}"
    return path


def lines_of(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- recorded: the console ----------------------------------------------------------------------------------

def test_console_changes_are_recorded_with_who_where_what_before_and_after(console_a, admin_a, tenant_a,
                                                                             agent_factory):
    add = reverse("admin:tenant_location_add")
    assert console_a.post(add, {"name": "HQ", "kind": "trusted", "ranges": "192.0.2.0/24"}).status_code == 302
    location = Location.objects.get(tenant=tenant_a, name="HQ")
    change = reverse("admin:tenant_location_change", args=[location.pk])
    assert console_a.post(change, {"name": "HQ", "kind": "blocked", "ranges": "198.51.100.0/24"}).status_code == 302
    agent, _ = agent_factory(tenant_a, name="dc-side")
    revoke = console_a.post(reverse("admin:agents_agent_changelist"),
                            {"action": "revoke_selected", "_selected_action": [str(agent.pk)]})
    assert revoke.status_code == 302

    created, changed = (AuditEvent.objects.get(object_type="location", action=a) for a in
                        ("location.created", "location.changed"))
    for event in (created, changed):
        assert (event.actor, event.actor_user_id, event.through) == (admin_a.upn, admin_a.pk, "console")
        assert event.address == "127.0.0.1" and event.tenant_id == tenant_a.pk
        assert event.object_id == str(location.pk) and event.object_repr == "HQ"
    assert created.detail == f"POST {add}" and created.changes["ranges"] == {"before": None, "after": "192.0.2.0/24"}
    assert changed.changes == {"kind": {"before": "trusted", "after": "blocked"},
                               "ranges": {"before": "192.0.2.0/24", "after": "198.51.100.0/24"}}
    revoked = AuditEvent.objects.get(object_type="agent", object_id=str(agent.pk))
    assert revoked.action == "agent.revoked" and "action=revoke_selected" in revoked.detail
    assert revoked.changes["revoked_at"]["before"] is None and revoked.changes["revoked_at"]["after"]


def test_an_mfa_reset_in_the_console_records_each_factor_removed(console_a, tenant_a):
    user = User.objects.create_user("dana@alpha.example.test", tenant=tenant_a)
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    reset = console_a.post(reverse("admin:tenant_user_changelist"),
                           {"action": "reset_mfa", "_selected_action": [str(user.pk)]})
    assert reset.status_code == 302 and not TOTPDevice.objects.filter(user=user).exists()
    removed = AuditEvent.objects.get(action="mfa_authenticator.removed")
    assert removed.tenant_id == tenant_a.pk and removed.object_id == str(device.pk)
    assert removed.changes["key"] == {"before": "[redacted]", "after": "[redacted]"}
    assert device.key not in trail_text()


def test_what_the_portal_does_by_itself_is_not_an_administrative_change(tenant_a):
    # A sign-in updating a user from the directory, the periodic work: no actor, no event.
    User.objects.create_user("eve@alpha.example.test", tenant=tenant_a, display_name="Eve")
    tenant_a.name = "Alpha Renamed"
    tenant_a.save()
    assert not AuditEvent.objects.exists()


# --- never a secret ---------------------------------------------------------------------------------------

def test_secrets_shown_once_or_typed_never_enter_the_trail_nor_the_stream(
        console_a, tenant_a, stream_file, tmp_path, django_capture_on_commit_callbacks, capsys):
    secrets_seen = []
    with django_capture_on_commit_callbacks(execute=True):
        # The console: a registration token and a client secret, each shown once on its page.
        add_token = reverse("admin:agents_registrationtoken_add")
        issued = console_a.post(add_token, {"ttl_seconds": "3600", **shown_form(console_a, add_token)})
        secrets_seen.append(issued.context["raw_token"])
        add_app = reverse("admin:applications_application_add")
        registered = console_a.post(add_app, {
            "name": "Intranet", "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": "https://intranet.alpha.test/cb", "post_logout_redirect_uris": "",
            "algorithm": Application.RS256_ALGORITHM, "skip_authorization": "on", "groups_claim": "all",
            "groups_claim_format": "name", "groups_claim_limit": "200", "pending_groups-TOTAL_FORMS": "0",
            "pending_groups-INITIAL_FORMS": "0", "pending_groups-MIN_NUM_FORMS": "0",
            "pending_groups-MAX_NUM_FORMS": "1000", **shown_form(console_a, add_app)})
        secrets_seen.append(registered.context["secret"])
        application = Application.objects.get(name="Intranet")
        rotate = reverse("admin:applications_application_rotate_secret", args=[application.pk])
        rotated = console_a.post(rotate, shown_form(console_a, rotate))
        secrets_seen.append(rotated.context["secret"])
        # Typed: a webhook secret, a cloud account's password.
        webhook_secret = "whsec-typed-into-the-console-0123456789"
        settings_add = reverse("admin:health_alertsettings_add")
        assert console_a.post(settings_add, {"emails": "", "webhook_url": "https://hooks.example.com/pta",
                                             "webhook_secret": webhook_secret,
                                             "active_agents_threshold": "1"}).status_code == 302
        secrets_seen.append(webhook_secret)
        secrets_seen.append("https://hooks.example.com/pta")  # a chat webhook's URL is enough to post to it
        cloud = User.objects.create_user("breakglass@alpha.example.test", "Old-pa55word-xyz", tenant=tenant_a,
                                         source=User.Source.CLOUD)
        password_url = reverse("admin:auth_user_password_change", args=[cloud.pk])
        assert console_a.post(password_url, {"password1": CONSOLE_PASSWORD, "password2": CONSOLE_PASSWORD,
                                             "usable_password": "true"}).status_code == 302
        secrets_seen.append(CONSOLE_PASSWORD)
        cloud.refresh_from_db()
        secrets_seen.append(cloud.password.split("$")[-1])  # the stored hash itself
        # Commands: a secret printed once, a secret read from a file.
        out = io.StringIO()
        call_command("app_register", "--tenant", tenant_a.slug, "--name", "Mail", "--grant", "password", stdout=out)
        secrets_seen.append(dict(line.split("=", 1) for line in out.getvalue().splitlines())["client_secret"])
        out = io.StringIO()
        call_command("agent_token", "--tenant", tenant_a.slug, stdout=out)
        secrets_seen.append(out.getvalue().strip().splitlines()[-1])
        secret_file = tmp_path / "webhook-secret"
        secret_file.write_text("whsec-from-a-file-9876543210")
        call_command("tenant_alerts", tenant_a.slug, "--webhook-secret-file", str(secret_file), stdout=io.StringIO())
        secrets_seen.append("whsec-from-a-file-9876543210")

    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"registration_token.issued", "application.created", "application.secret_rotated",
            "alert_settings.created", "user.password_set", "alert_settings.changed"} <= actions, actions
    rotated_event = AuditEvent.objects.get(action="application.secret_rotated")
    assert rotated_event.changes["client_secret"] == {"before": "[redacted]", "after": "[redacted]"}
    webhook_event = AuditEvent.objects.get(action="alert_settings.changed")
    assert webhook_event.changes["webhook_secret_encrypted"]["after"] == "[redacted]"
    assert webhook_event.actor == "manage.py tenant_alerts" and "[redacted]" in webhook_event.detail
    streamed = stream_file.read_text()
    assert len(lines_of(stream_file)) == AuditEvent.objects.count()
    held = trail_text()
    for secret in secrets_seen:
        assert secret and secret not in held and secret not in streamed, secret[:8]


# --- the console: read-only, each tenant its own --------------------------------------------------------

@pytest.fixture
def two_trails(tenant_a, tenant_b):
    events = {}
    for label, tenant in (("a", tenant_a), ("b", tenant_b)):
        with actor_set(Actor(name=f"ops-{label}", through=Through.COMMAND)):
            from tenant.services import location_set

            location_set(tenant=tenant, name=f"secret-office-{label}", ranges=["192.0.2.0/24"], kind="trusted")
        events[label] = AuditEvent.objects.get(object_repr=f"secret-office-{label}")
    with actor_set(Actor(name="ops-b", through=Through.COMMAND)):
        registration_token_issue(tenant=tenant_b)  # an action and an object type only tenant B's trail has
    return events


def test_a_tenant_admin_sees_only_their_tenants_trail_and_can_change_none_of_it(console_a, two_trails, tenant_b):
    own, other = two_trails["a"], two_trails["b"]
    changelist = reverse("admin:trail_auditevent_changelist")
    listed = console_a.get(changelist)
    assert listed.status_code == 200
    assert set(listed.context["cl"].result_list) == {own}
    assert "secret-office-b" not in listed.content.decode()
    # The filters offer only what the tenant's own events hold (their values come from the scoped list).
    assert "registration_token" not in listed.content.decode() and "location.created" in listed.content.decode()
    # Searching, filtering by the other tenant, by its object type and its date: nothing of it.
    for query in ({"q": "office-b"}, {"q": "ops-b"}, {"tenant": str(tenant_b.pk)},
                  {"tenant_id": str(tenant_b.pk)}, {"tenant_id__exact": str(tenant_b.pk)},
                  {"action": "location.created"}):
        answer = console_a.get(changelist, query)
        assert "secret-office-b" not in answer.content.decode(), query
        if answer.status_code == 200:
            assert other not in set(answer.context["cl"].result_list), query
    # The other tenant's event by its URL: not found, to read, its history, to change or to delete.
    for view in ("change", "history", "delete"):
        assert console_a.get(reverse(f"admin:trail_auditevent_{view}", args=[other.pk])).status_code in (403, 404)
    assert console_a.post(reverse("admin:trail_auditevent_change", args=[other.pk]),
                          {"action": "x"}).status_code in (403, 404)
    assert console_a.post(reverse("admin:trail_auditevent_delete", args=[other.pk]),
                          {"post": "yes"}).status_code in (403, 404)
    # Its own: readable, never changed, deleted or added.
    assert console_a.get(reverse("admin:trail_auditevent_change", args=[own.pk])).status_code == 200
    assert console_a.post(reverse("admin:trail_auditevent_change", args=[own.pk]),
                          {"action": "tampered"}).status_code == 403
    assert console_a.post(reverse("admin:trail_auditevent_delete", args=[own.pk]), {"post": "yes"}).status_code == 403
    assert console_a.post(reverse("admin:trail_auditevent_add"), {"action": "forged"}).status_code == 403
    bulk = console_a.post(changelist, {"action": "delete_selected", "_selected_action": [str(own.pk), str(other.pk)],
                                       "post": "yes"})
    assert bulk.status_code in (200, 302, 403)
    assert AuditEvent.objects.filter(pk__in=[own.pk, other.pk]).count() == 2
    assert AuditEvent.objects.get(pk=own.pk).action == "location.created"


def test_a_platform_admin_sees_every_tenants_trail(client, two_trails, tenant_b):
    platform = User.objects.create_superuser("root@platform.test", "Platform-pa55-word")
    client.force_login(platform)
    changelist = reverse("admin:trail_auditevent_changelist")
    assert set(client.get(changelist).context["cl"].result_list) >= {two_trails["a"], two_trails["b"]}
    only_b = client.get(changelist, {"tenant": str(tenant_b.pk), "object_type": "location"})
    assert set(only_b.context["cl"].result_list) == {two_trails["b"]}
    page = client.get(reverse("admin:trail_auditevent_change", args=[two_trails["b"].pk])).content.decode()
    assert "Beta Corp" in page and "192.0.2.0/24" in page


def test_the_trail_is_append_only(two_trails):
    event = two_trails["a"]
    event.action = "tampered"
    with pytest.raises(TypeError):
        event.save()
    with pytest.raises(TypeError):
        AuditEvent.objects.filter(pk=event.pk).update(action="tampered")
    with pytest.raises(TypeError):
        event.delete()
    if connection.vendor == "postgresql":  # the production profile: the database itself refuses
        from django.db import DatabaseError, transaction

        for statement in ("UPDATE trail_auditevent SET action = 'tampered' WHERE id = %s",
                          "DELETE FROM trail_auditevent WHERE id = %s"):
            with pytest.raises(DatabaseError), transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(statement, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == "location.created"


# --- commands -----------------------------------------------------------------------------------------------

def test_a_command_is_recorded_with_its_os_user_and_arguments(db):
    call_command("tenant_create", "--name", "Gamma", "--domain", "gamma.example.test", stdout=io.StringIO(),
                 stderr=io.StringIO())
    call_command("tenant_policy", "gamma", "--mfa", "all", stdout=io.StringIO())
    created = AuditEvent.objects.get(action="tenant.created")
    assert created.actor == "manage.py tenant_create" and created.through == "command"
    assert created.actor_os_user and created.address is None
    assert "--name=Gamma" in created.detail
    assert AuditEvent.objects.filter(action="domain.created", object_repr="gamma.example.test").exists()
    policy = AuditEvent.objects.get(action="tenant.changed")
    assert policy.changes == {"mfa_policy": {"before": "off", "after": "all"}}


def test_a_saml_service_providers_registration_and_change_are_recorded(tenant_a):
    """Who added an ACS URL (where every user's signed assertions may then go) or stopped requiring signed
    requests is in the trail, with the SP's tenant, like any application's change."""
    call_command("app_register", "--tenant", tenant_a.slug, "--name", "Wiki", "--saml", "--entity-id",
                 "https://wiki.alpha.test/saml", "--acs-url", "https://wiki.alpha.test/acs", stdout=io.StringIO())
    from samlidp.models import ServiceProvider

    created = AuditEvent.objects.get(action="saml_service_provider.created")
    assert created.tenant_id == tenant_a.pk and created.actor == "manage.py app_register"
    sp = ServiceProvider.objects.get(entity_id="https://wiki.alpha.test/saml")
    with actor_set(Actor(name="ops", through=Through.COMMAND)):
        sp.acs_urls += "\nhttps://evil.example/acs"
        sp.save()
    changed = AuditEvent.objects.get(action="saml_service_provider.changed")
    assert "https://evil.example/acs" in str(changed.changes["acs_urls"]["after"])
    call_command("saml_key_rotate", tenant_a.slug, "--stage", stdout=io.StringIO())
    assert AuditEvent.objects.filter(action="saml_signing_key.created", tenant_id=tenant_a.pk,
                                     actor="manage.py saml_key_rotate").exists()


# --- the stream, the export, retention -----------------------------------------------------------------------

def test_sign_ins_and_changes_are_streamed_as_json_lines_and_the_file_may_be_rotated(
        tenant_a, stream_file, django_capture_on_commit_callbacks):
    signin_event_record(username="bob@alpha.example.test", tenant=tenant_a, outcome="invalid_credentials",
                        ip_address="203.0.113.9", ad_subcode="52e")
    stream_file.rename(stream_file.with_suffix(".1"))  # logrotate's move
    with django_capture_on_commit_callbacks(execute=True), actor_set(Actor(name="ops", through=Through.COMMAND)):
        registration_token_issue(tenant=tenant_a)
    signin, = lines_of(stream_file.with_suffix(".1"))
    assert signin["schema"] == "pta-audit/1" and signin["kind"] == "signin"
    assert (signin["username"], signin["outcome"], signin["address"], signin["tenant"]) == (
        "bob@alpha.example.test", "invalid_credentials", "203.0.113.9", str(tenant_a.pk))
    change, = lines_of(stream_file)  # the new file, made after the rotation
    assert change["kind"] == "change" and change["action"] == "registration_token.issued"
    assert change["actor"]["name"] == "ops" and change["tenant"] == str(tenant_a.pk)
    assert stat.S_IMODE(os.stat(stream_file).st_mode) & 0o007 == 0  # not world-readable


def test_the_stream_reaches_syslog_over_udp(tenant_a, settings):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(5)
    settings.PTA_AUDIT_STREAM = f"syslog://127.0.0.1:{receiver.getsockname()[1]}"
    try:
        signin_event_record(username="carol@alpha.example.test", tenant=tenant_a, outcome="success")
        datagram = receiver.recv(65536).decode()
    finally:
        receiver.close()
    assert "pta-audit: " in datagram
    line = json.loads(datagram.split("pta-audit: ", 1)[1].rstrip("\x00"))
    assert line["kind"] == "signin" and line["username"] == "carol@alpha.example.test"


def test_audit_export_writes_a_time_range_oldest_first(tenant_a, two_trails, tmp_path):
    old = signin_event_record(username="old@alpha.example.test", tenant=tenant_a, outcome="success")
    type(old).objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=3))
    signin_event_record(username="new@alpha.example.test", tenant=tenant_a, outcome="success")
    since = (timezone.now() - datetime.timedelta(hours=1)).isoformat()
    out = io.StringIO()
    call_command("audit_export", "--since", since, stdout=out, stderr=io.StringIO())
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {(line["kind"], line.get("username")) for line in lines} == {
        ("change", None), ("signin", "new@alpha.example.test")}
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)
    assert len([line for line in lines if line["kind"] == "change"]) == 3  # both tenants'
    target = tmp_path / "export.jsonl"
    call_command("audit_export", "--since", "2000-01-01", "--kind", "signin", "--tenant", tenant_a.slug,
                 "--output", str(target), stderr=io.StringIO())
    assert [json.loads(line)["username"] for line in target.read_text().splitlines()] == [
        "old@alpha.example.test", "new@alpha.example.test"]
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640
    for bad in (["--since", "yesterday"], ["--since", "2026-12-07", "--until", "2026-12-01"],
                ["--since", "2026-12-07", "--tenant", "nobody"]):
        with pytest.raises(CommandError):
            call_command("audit_export", *bad, stdout=io.StringIO())


def test_old_events_and_long_resolved_incidents_are_purged(two_trails, tenant_a, settings):
    settings.PTA_AUDIT_RETENTION_DAYS = 30
    settings.PTA_INCIDENT_RETENTION_DAYS = 30
    old = two_trails["a"]
    with connection.cursor() as cursor:  # the trail cannot be updated: moved back in time by SQL, guard lifted
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE trail_auditevent DISABLE TRIGGER trail_auditevent_append_only")
        cursor.execute("UPDATE trail_auditevent SET created_at = %s WHERE id = %s",
                       [timezone.now() - datetime.timedelta(days=31), old.pk])
        if connection.vendor == "postgresql":
            cursor.execute("ALTER TABLE trail_auditevent ENABLE TRIGGER trail_auditevent_append_only")
    assert purge_audit_events.apply().get() == 1
    assert not AuditEvent.objects.filter(pk=old.pk).exists()
    assert AuditEvent.objects.filter(pk=two_trails["b"].pk).exists()  # younger than the retention: kept

    from health.tasks import purge_resolved_incidents

    long_ago = timezone.now() - datetime.timedelta(days=31)
    kinds = Incident.Kind
    gone = Incident.objects.create(tenant=tenant_a, kind=kinds.FAILOVER_LOST, summary="old", opened_at=long_ago,
                                   resolved_at=long_ago)
    still_open = Incident.objects.create(tenant=tenant_a, kind=kinds.AGENTS_BELOW_THRESHOLD, summary="open",
                                         opened_at=long_ago)
    recent = Incident.objects.create(tenant=tenant_a, kind=kinds.CERTIFICATE_EXPIRING, summary="recent",
                                     opened_at=long_ago, resolved_at=timezone.now() - datetime.timedelta(days=2))
    assert purge_resolved_incidents.apply().get() == 1
    assert set(Incident.objects.all()) == {still_open, recent} and not Incident.objects.filter(pk=gone.pk).exists()


def test_an_agents_registration_is_recorded_as_its_tokens(client, tenant_a):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dc-side")])).sign(key, hashes.SHA256()))
    token, raw = registration_token_issue(tenant=tenant_a, domains=list(tenant_a.domains.all()))
    answer = client.post("/agent/register/", json.dumps({
        "token": raw, "csr": csr.public_bytes(serialization.Encoding.PEM).decode(), "name": "dc-side"}),
        content_type="application/json")
    assert answer.status_code == 201
    created = AuditEvent.objects.get(action="agent.created")
    assert created.actor == f"agent registration (token …{token.hint})" and created.through == "registration"
    assert created.tenant_id == tenant_a.pk and created.object_id == answer.json()["agent_id"]
    domains = AuditEvent.objects.get(action="agent.changed", object_id=answer.json()["agent_id"])
    assert domains.changes == {"domains": {"before": [], "after": ["alpha.example.test"]}}
    assert raw not in trail_text()


def test_a_platform_administrator_made_by_createsuperuser_is_recorded_without_the_password(db, monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "Sup3r-secret-never-kept")
    call_command("createsuperuser", "--noinput", "--upn", "root@platform.test", stdout=io.StringIO())
    created = AuditEvent.objects.get(action="user.created", object_repr="root@platform.test")
    assert created.actor == "manage.py createsuperuser" and created.tenant_id is None
    assert created.changes["is_superuser"] == {"before": None, "after": True}
    assert created.changes["password"] == {"before": "[redacted]", "after": "[redacted]"}
    assert "Sup3r-secret-never-kept" not in trail_text()
    assert User.objects.get(upn="root@platform.test").password.split("$")[-1] not in trail_text()


def test_a_sink_that_cannot_be_reached_loses_the_line_never_the_sign_in(tenant_a, settings, tmp_path, caplog):
    settings.PTA_AUDIT_STREAM = f"syslog:{tmp_path}/no-such-socket"
    event = signin_event_record(username="dan@alpha.example.test", tenant=tenant_a, outcome="success")
    assert event.pk is not None
    assert "a line was lost" in caplog.text
