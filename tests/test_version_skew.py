"""Nodes of two releases share one database during a rolling upgrade (docs/deploy.md): the previous release's
nodes go on inserting rows as they know them. A column added since must therefore have a default in the database
itself (``db_default``) or be nullable; a default in Python only (``default=``) is the new release's alone, and
PostgreSQL refused the previous release's sign-in records ("null value in column sealed_by").

The rule holds from the skew policy on: the migrations up to the release before it (``BEFORE_THE_POLICY``) were
applied by every release that may still run."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.db.migrations.operations import AddField
from django.db.models import NOT_PROVIDED, Field

PROJECT_APPS = ("agents", "applications", "branding", "health", "samlidp", "signin", "tenant", "trail")
# Each app's last migration of the release before the skew policy (d17879f): its columns every node knows.
BEFORE_THE_POLICY = {"agents": "0003", "applications": "0006", "branding": "0002", "health": "0004",
                     "signin": "0010", "tenant": "0009"}


def added_columns() -> list[tuple[str, str, str, Field]]:
    """Each column added since the policy: its app, its model, its name and its field as the last migration
    leaves it."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    state = loader.project_state()
    return [(app, op.model_name, op.name, state.models[app, op.model_name].fields[op.name])
            for (app, name), migration in sorted(loader.disk_migrations.items())
            if app in PROJECT_APPS and name[:4] > BEFORE_THE_POLICY.get(app, "")
            for op in migration.operations if isinstance(op, AddField)]


def test_columns_added_since_the_policy_can_be_left_out_by_the_previous_release():
    added = added_columns()
    assert added, "no column was added since the policy: the check below checked nothing (move the cut-off?)"
    needing = [f"{app}.{model}.{name}" for app, model, name, field in added
               if not field.null and not field.many_to_many and field.db_default is NOT_PROVIDED]
    assert not needing, ("NOT NULL columns with no database default (give them db_default, or null=True): "
                         + ", ".join(needing))


@pytest.mark.django_db
def test_the_database_has_those_defaults():
    """What the migrations made: an INSERT that leaves the new columns out gets their defaults (as the previous
    release's nodes write rows)."""
    from django.apps import apps

    checked = 0
    with connection.cursor() as cursor:
        for app, model_name, name, _ in added_columns():
            model = apps.get_model(app, model_name)
            field = model._meta.get_field(name)
            if field.null or field.many_to_many:
                continue
            description = {c.name: c for c in connection.introspection.get_table_description(
                cursor, model._meta.db_table)}
            assert description[field.column].default is not None, f"{model._meta.db_table}.{field.column}"
            checked += 1
    assert checked >= 4  # sealed_by, mfa_factor and the two phishing_resistant_required at least
