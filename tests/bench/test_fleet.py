"""The pure parts of the benchmark's simulated agents and of the modes built on them (bench/simagents.py,
bench/fleet.py): the simulated directory's answers, the soak's mix, the growth fit and the cost listings. The
runs themselves (real portals, thousands of connections) stay in bench/."""

from __future__ import annotations

import random
import uuid

import pytest
from pta_protocol import Outcome

from bench import fleet
from bench.simagents import FLEET_PASSWORD, SimulatedDirectory, directory_answer

DOMAINS = ("t0.fleet.test",)


def test_the_simulated_directory_knows_its_domains_accounts_by_one_password():
    def user(name: str):
        verdict = directory_answer(name, FLEET_PASSWORD, DOMAINS)
        assert verdict.outcome is Outcome.SUCCESS and verdict.user is not None
        return verdict.user

    assert user("User7@T0.fleet.test").upn == "user7@t0.fleet.test"
    assert user("User7@T0.fleet.test").object_guid == user("user7@t0.fleet.test").object_guid  # one person
    assert uuid.UUID(user("user7@t0.fleet.test").object_guid) != uuid.UUID(user("user8@t0.fleet.test").object_guid)
    for name, password in (("user7@t0.fleet.test", "wrong"), ("nobody1@t0.fleet.test", FLEET_PASSWORD),
                           ("user7@t1.fleet.test", FLEET_PASSWORD)):
        refused = directory_answer(name, password, DOMAINS)
        assert (refused.outcome, refused.ad_subcode, refused.user) == (Outcome.INVALID_CREDENTIALS, "52e", None)


def test_the_simulated_directory_answers_after_its_cost():
    import asyncio
    import time

    directory = SimulatedDirectory(["T0.fleet.test"], cost=0.05)
    started = time.monotonic()
    verdict = asyncio.run(directory.validate_async("user1@t0.fleet.test", FLEET_PASSWORD, deadline=0))
    assert verdict.outcome is Outcome.SUCCESS and time.monotonic() - started >= 0.05
    assert not directory.can_change_passwords and not directory.can_read_groups


def test_the_soak_mix_is_eight_good_one_wrong_one_unknown_in_ten():
    rng = random.Random(1)
    plan = [fleet.soak_mix(i, rng, "t0.fleet.test") for i in range(10_000)]
    wants = [p["want"] for p in plan]
    assert 0.78 < wants.count("success") / len(plan) < 0.82
    unknown = [p for p in plan if p["upn"].startswith("nobody")]
    assert 0.08 < len(unknown) / len(plan) < 0.12 and len({p["upn"] for p in unknown}) == len(unknown)
    accounts = {p["upn"] for p in plan if p["want"] == "success"}
    assert len(accounts) == fleet.SOAK_ACCOUNTS
    for attempt in plan:  # each attempt expects what the simulated directory will answer
        outcome = directory_answer(attempt["upn"], attempt["password"], DOMAINS).outcome
        assert outcome.value == attempt["want"]


def test_growth_is_the_slope_per_10k_after_the_first_sample():
    samples = [{"signins": 0, "portal_kib": 50_000}]  # start-up: left out of the fit
    samples += [{"signins": n, "portal_kib": 100_000 + n * 1024 // 1000} for n in range(1000, 6000, 1000)]
    assert fleet.growth_per_10k(samples, "portal_kib") == pytest.approx(10.0, abs=0.01)  # 1 MiB per 1,000
    assert fleet.growth_per_10k(samples[:2], "portal_kib") != fleet.growth_per_10k(samples[:2], "portal_kib")  # nan


def test_cost_listings_name_what_ran_and_hide_the_keys_secret_parts():
    assert fleet.statement_kind('SELECT "tenant_user"."id" FROM "tenant_user" WHERE x') == "SELECT tenant_user"
    assert fleet.statement_kind('INSERT INTO "signin_signinevent" ("a") VALUES (1)') == "INSERT signin_signinevent"
    assert fleet.statement_kind("BEGIN") == "BEGIN"
    key = f"pta-x:cache:1:places:{uuid.uuid4()}:0123456789abcdef0123456789abcdef"  # as MONITOR shows it
    assert fleet.command_shape(f"GET {key}", "pta-x") == "GET cache:1:places:…:…"
    assert fleet.command_shape("EVALSHA abc 2 k", "pta-x") == "EVALSHA"
