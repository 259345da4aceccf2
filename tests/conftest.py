import collections
import os

import pytest

pytest_plugins = ["tests.fixtures.ad", "tests.fixtures.portal", "tests.fixtures.browser", "tests.fixtures.dns",
                  "tests.fixtures.postgres", "tests.fixtures.receivers", "tests.fixtures.budget"]

# Tests that cannot see the profile, whatever DATABASE_URL and REDIS_URL say: the agent's (nothing under
# agents/onprem imports Django, tests/agents/onprem/test_no_django.py), the shared protocol's, the benchmark's load
# generator and the import graph (read from the files). scripts/test's production pass leaves them out.
PROFILE_FREE = ("tests/agents/onprem/", "tests/agents/test_protocol.py", "tests/bench/", "tests/test_import_graph.py")


def pytest_itemcollected(item):
    if item.nodeid.startswith(PROFILE_FREE):
        item.add_marker(pytest.mark.profile_free)


@pytest.hookimpl(trylast=True)  # after pytest-django's own order of the database tests, which this one keeps
def pytest_collection_modifyitems(config, items):
    # The embedded profile (SQLite, no Redis) leaves out what needs the production profile's services themselves.
    absent = {"postgresql": not os.environ.get("DATABASE_URL", "").startswith("postgres"),
              "redis": not os.environ.get("REDIS_URL")}
    needing = [item for item in items if any(absent[name] and item.get_closest_marker(name) for name in absent)]
    if needing:
        config.hook.pytest_deselected(items=needing)
        chosen_out = set(map(id, needing))
        items[:] = [item for item in items if id(item) not in chosen_out]
    # The integration tests that need no test database first, the files with the most tests before the others:
    # they are the long ones, and workers of a parallel run (pytest-xdist, a file to a worker) that start with them
    # finish together, the short unit tests filling in at the end. Everything else keeps its order.
    first = [item for item in items if item.get_closest_marker("integration") and not _uses_test_database(item)]
    sizes = collections.Counter(item.path for item in first)
    first.sort(key=lambda item: -sizes[item.path])  # stable: a file's tests stay together and in order
    chosen = set(map(id, first))
    items[:] = first + [item for item in items if id(item) not in chosen]


def _uses_test_database(item) -> bool:
    return bool(item.get_closest_marker("django_db")) or bool({"db", "transactional_db"} & set(item.fixturenames))


@pytest.fixture(scope="session", autouse=True)
def quick_password_hashing():
    """Cloud accounts and administrators made in this process hash their password with a cheap hasher: PBKDF2's
    million rounds cost about a second of CPU per user and per password sign-in, and what the tests check of a
    local password (right, wrong, never stored in clear) does not depend on the rounds. Portals the tests start
    as processes keep the real hashers."""
    from django.test.utils import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


KEPT_BY_FLUSH = {"django_content_type", "auth_permission"}


@pytest.fixture(scope="session", autouse=True)
def quick_flush_on_postgresql():
    """Production profile: a transactional test ends with Django's flush, one TRUNCATE of every table, which on
    PostgreSQL makes new files for each table and index, then post_migrate, which makes the content types and
    permissions again: 0.2 s a test on a quiet machine, more than most tests. Here, a DELETE of each table in one
    transaction leaves the same empty tables in about 10 ms (the foreign keys are deferred to its commit), and the
    content types and permissions stay (post_migrate would make the same rows; no test changes them).
    The audit trail's trigger refuses DELETE: with the tests' superuser, ``session_replication_role`` sets it
    aside for that transaction only; with another role that table keeps its TRUNCATE."""
    from django.core.management.commands import flush
    from django.core.management.sql import emit_post_migrate_signal
    from django.db import connections
    from django.db.backends.postgresql.operations import DatabaseOperations

    truncating = DatabaseOperations.sql_flush

    def sql_flush(self, style, tables, *, reset_sequences=False, allow_cascade=False):
        if reset_sequences or not tables:
            return truncating(self, style, tables, reset_sequences=reset_sequences, allow_cascade=allow_cascade)
        with self.connection.cursor() as cursor:
            cursor.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
            superuser = cursor.fetchone()[0]
            cursor.execute("SELECT DISTINCT tgrelid::regclass::text FROM pg_trigger WHERE NOT tgisinternal")
            triggered = set() if superuser else {name.strip('"') for (name,) in cursor.fetchall()}
        tables = [table for table in tables if table not in KEPT_BY_FLUSH]
        truncated = [table for table in tables if table in triggered]
        statements = ["SET LOCAL session_replication_role = replica;"] if superuser else []
        if truncated:
            statements += truncating(self, style, truncated, allow_cascade=allow_cascade)
        deleted = [table for table in tables if table not in triggered]
        return statements + [f"DELETE FROM {self.quote_name(table)};" for table in deleted]  # noqa: S608

    def post_migrate_unless_kept(verbosity, interactive, db, **kwargs):
        if connections[db].vendor != "postgresql":  # SQLite's flush deleted the content types and permissions too
            emit_post_migrate_signal(verbosity, interactive, db, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "sql_flush", sql_flush)
        patch.setattr(flush, "emit_post_migrate_signal", post_migrate_unless_kept)
        yield


@pytest.fixture(autouse=True)
def connection_pool_per_transactional_test(request):
    """Production profile: a transactional test that drives the ASGI application leaves pooled connections in
    threads it no longer runs (asgiref's per-request threads), which the pool counts as taken until it closes:
    a portal process has one application and returns them, the test process builds one per test. The next such
    test starts with a fresh pool, so taken connections never pile up to its max_size."""
    yield
    marker = request.node.get_closest_marker("django_db")
    if "transactional_db" in request.fixturenames or (marker and marker.kwargs.get("transaction")):
        from django.db import connections

        for connection in connections.all(initialized_only=True):
            if hasattr(connection, "close_pool"):
                connection.close_pool()


@pytest.fixture
def tenant_factory(db):
    from tenant.services import tenant_create

    counter = iter(range(1, 10_000))

    def make(name: str | None = None, domains: list[str] | None = None):
        n = next(counter)
        return tenant_create(name=name or f"Tenant {n}", domains=domains or [f"t{n}.example.test"])

    return make


@pytest.fixture
def tenant_a(tenant_factory):
    return tenant_factory("Alpha Corp", ["alpha.example.test"])


@pytest.fixture
def tenant_b(tenant_factory):
    return tenant_factory("Beta Corp", ["beta.example.test"])


@pytest.fixture
def tenant_admin_factory(db):
    from tenant.services import tenant_admin_create

    def make(tenant, local: str = "admin"):
        domain = tenant.domains.first().name
        return tenant_admin_create(tenant=tenant, upn=f"{local}@{domain}", display_name=f"{tenant.name} admin",
                                   password="Adm1n-pa55-for-tests")

    return make


@pytest.fixture
def agent_factory(db):
    """A registered agent (real CSR, real certificate from the tenant's CA), and its private key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from agents.services.registration import agent_register, registration_token_issue

    def make(tenant, name: str = "agent-1"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        csr = (x509.CertificateSigningRequestBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
               .sign(key, hashes.SHA256()))
        _, raw = registration_token_issue(tenant=tenant)
        registration = agent_register(token=raw, csr_pem=csr.public_bytes(serialization.Encoding.PEM).decode(),
                                      name=name, hostname=f"{name}.local", version="test")
        return registration.agent, key

    return make


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Close the PostgreSQL connection pool before pytest-django drops the test database: the pool's idle
    connections would otherwise keep it ("being accessed by other users"). A connection taken by a thread that
    is gone (asgiref's per-request threads) never returns to the pool: its session is ended on the server."""
    yield
    from django.db import connections

    with django_db_blocker.unblock():
        for connection in connections.all(initialized_only=True):
            if hasattr(connection, "close_pool"):
                connection.close_pool()
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                   "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                connection.close()
