"""The fleet's tenants and registration tokens, made in bulk in one Django process with the portal's environment
(bench/fleet.py runs it): `python bench/fleet_seed.py --tenants T --agents N [--first F]` makes sure tenants
fleet-0 … fleet-(T-1) exist, each with the verified domain t<i>.fleet.test, and prints a JSON list of N one-time
registration tokens, agent j (numbered from F) going to tenant j mod T."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")


def tenant_domain(index: int) -> str:
    return f"t{index}.fleet.test"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tenants", type=int, required=True)
    parser.add_argument("--agents", type=int, default=0)
    parser.add_argument("--first", type=int, default=0)
    args = parser.parse_args(argv)
    import django

    django.setup()
    from agents.services.registration import registration_token_issue
    from tenant.models import Tenant
    from tenant.services import tenant_create

    existing = set(Tenant.objects.filter(slug__startswith="fleet-").values_list("slug", flat=True))
    for index in range(args.tenants):
        if f"fleet-{index}" not in existing:
            tenant_create(name=f"Fleet {index}", domains=[tenant_domain(index)], slug=f"fleet-{index}")
    tenants = {t.slug: t for t in Tenant.objects.filter(slug__startswith="fleet-")}
    tokens = []
    for agent in range(args.first, args.first + args.agents):
        _, raw = registration_token_issue(tenant=tenants[f"fleet-{agent % args.tenants}"], ttl_seconds=3600)
        tokens.append(raw)
    print(json.dumps(tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
