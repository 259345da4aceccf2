"""Backup and restore as docs/deploy.md tells an operator: ``pg_dump`` of a production portal's database, restored
by ``pg_restore`` into a new database, served by a new node (a new process, a new state folder and a Redis with
nothing of the old one) that has the same environment keys. What was there before still works: the agent comes
back with its certificate, a user signs in through it against the Samba DC, a refresh token issued before the
backup refreshes, the tenant's CA issues a certificate to a new agent, and the trail came along."""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
import uuid
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from tests.fixtures.http import sign_in
from tests.fixtures.portal import (
    Portal,
    RawAgent,
    create_database,
    free_port,
    local_agents,
    make_portal,
    start_agent,
    wait_for,
)
from tests.fixtures.postgres import postgres_bindir

pytestmark = pytest.mark.integration


def kv(output: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in output.splitlines() if "=" in line)


def pg_tool(name: str) -> str:
    found = postgres_bindir() / name
    if not found.exists():
        pytest.fail(f"{found} is needed: apt-get install postgresql-client", pytrace=False)
    return str(found)


def backup(portal: Portal) -> Path:
    """docs/deploy.md's backup: one custom-format dump of the database."""
    dump = portal.directory / "portal.dump"
    subprocess.run([pg_tool("pg_dump"), "--format=custom", "--file", str(dump), portal.env["DATABASE_URL"]],
                   check=True, capture_output=True, timeout=60)
    return dump


def restored_from(source: Portal, dump: Path) -> Portal:
    """docs/deploy.md's restore: an empty database, pg_restore, and the same keys in the environment; a new state
    folder and a Redis key prefix of its own (nothing of the old node's Redis)."""
    database = create_database(pg_url=source.pg_url)
    directory = Path(tempfile.mkdtemp(prefix="pta-portal-restored-"))
    prefix = f"pta-it-{uuid.uuid4().hex[:10]}"
    url = source.env["DATABASE_URL"].rsplit("/", 1)[0] + f"/{database}"
    env = {**source.env, "DATABASE_URL": url, "PTA_REDIS_PREFIX": prefix, "PTA_STATE_DIR": str(directory / "state")}
    portal = dataclasses.replace(source, directory=directory, env=env, database_name=database, redis_prefix=prefix,
                                 nodes=[], agents=[], manager=None)
    done = subprocess.run([pg_tool("pg_restore"), "--no-owner", "--exit-on-error", "--dbname", url, str(dump)],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        portal.close()
        pytest.fail(f"pg_restore exited {done.returncode}: {done.stderr[-2000:]}", pytrace=False)
    return portal


def token_post(node, app: dict, **data) -> httpx.Response:
    return httpx.post(f"{node.url}/token/", data=data, auth=(app["client_id"], app["client_secret"]), timeout=30)


def test_a_restored_dump_on_a_fresh_node_serves_as_before(ad_testbed):
    source = make_portal("production")
    restored: Portal | None = None
    try:
        port = free_port()
        public = {"PTA_PUBLIC_URL": f"http://127.0.0.1:{port}"}  # agents and clients know the portal by its URL
        before = source.start_node("before", port=port, env=public)
        tenant = source.tenant_create("Contoso", ad_testbed.upn_suffix)
        source.manage("tenant_policy", tenant, "--password-grant", "on")
        app = kv(source.manage("app_register", "--tenant", tenant, "--name", "Mail", "--grant", "password").stdout)
        agent = start_agent(source, before, tenant, ad_testbed)
        wait_for(lambda: local_agents(before) == 1, timeout=15, message="the agent to connect")
        user = ad_testbed.user("judy")
        issued = token_post(before, app, grant_type="password", username=user["upn"], password=user["password"],
                            scope="openid")
        assert issued.status_code == 200, issued.text
        refresh_token = issued.json()["refresh_token"]
        ca_pem = source.sql("SELECT ca_certificate_pem FROM agents_tenantauthority")[0][0]
        spare_token = source.agent_token(tenant)  # issued before the backup, used after the restore

        restored = restored_from(source, backup(source))
        before.stop()  # the old node (its machine) is gone; the new one takes its address
        after = restored.start_node("after", port=port, env=public)

        # The agent reconnects, with the key and certificate it registered with, to the restored portal.
        # (Its reconnection backs off up to 30 s apart: it is usually back within a second or two of the node.)
        wait_for(lambda: local_agents(after) == 1, timeout=45, message="the agent to reconnect to the new node")
        wait_for(lambda: restored.presence(agent.agent_id) is not None, timeout=10,
                 message="the agent's presence in the new portal's Redis")
        # A user signs in through it, against the DC.
        attempt = sign_in(after.url, user["upn"], user["password"])
        assert attempt.outcome == "success", (attempt.status, attempt.outcome, attempt.text[:300])
        # The refresh token issued before the backup still refreshes (the OIDC key and the hashes came along).
        refreshed = token_post(after, app, grant_type="refresh_token", refresh_token=refresh_token)
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["access_token"] != issued.json()["access_token"]
        # The tenant's CA still issues: its key, encrypted in the database, opens with the environment's key.
        newcomer = RawAgent.register(after, spare_token, name="after-restore")
        certificate = x509.load_pem_x509_certificate(newcomer.certificate_pem.encode())
        certificate.verify_directly_issued_by(x509.load_pem_x509_certificate(ca_pem.encode()))
        # And the audit trail came along: who made the tenant, who issued the tokens.
        actions = [row[0] for row in restored.sql("SELECT action FROM trail_auditevent ORDER BY id")]
        assert actions[0] == "tenant.created" and actions.count("registration_token.issued") == 2
    finally:
        if restored is not None:
            restored.close()
        source.close()
