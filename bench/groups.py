"""What reading a user's groups costs per sign-in, against the Samba AD test bed (docs/benchmarks.md, "Groups").

    .venv/bin/python bench/groups.py [--ad-dir DIR] [--rounds 40]     (inside a network namespace of its own, e.g.
                                                                      `unshare -n`)

Through the agent's own DirectoryValidator (one pooled connection, one thread): the whole sign-in (bind + the read
as the user) without groups, with groups as the agent reads them (tokenGroups on the user's entry, then one search
naming those SIDs), and, for comparison, the in-chain matching rule's search (1.2.840.113556.1.4.1941) on the same
bound connection. For users in 2 (nested: A holds B holds the user), 20 and 200 groups; the directory holds
every group of the run. Prints a Markdown table of medians and p95s in ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import ldap3
from ldap3.utils.conv import escape_filter_chars

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "agents" / "onprem")]

from pta_agent.directory import DirectoryOptions, DirectoryValidator  # noqa: E402

from tests.fixtures.directory_admin import DirectoryAdmin  # noqa: E402

PASSWORD = "Bench!Gr0ups-9"
IN_CHAIN = "1.2.840.113556.1.4.1941"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def timed(fn, rounds: int) -> tuple[float, float]:
    fn()  # warm: the pooled connection is open
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples), p95(samples)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ad-dir", default="", help="a running test bed's directory (else one is started)")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    own = not args.ad_dir
    directory = args.ad_dir or tempfile.mkdtemp(prefix="bench-groups-ad-")
    started = subprocess.run([sys.executable, str(ROOT / "scripts" / "ad_testbed.py"), "start", "--dir", directory,
                              "--json"], capture_output=True, text=True, check=True)
    facts = types.SimpleNamespace(**json.loads(started.stdout.strip().splitlines()[-1]))
    admin = DirectoryAdmin(facts)
    validator = DirectoryValidator(DirectoryOptions(ldap_urls=[facts.ldaps_url], ca_file=facts.ca_file,
                                                    base_dn=facts.base_dn, pool_size=1, workers=1))
    rows = []
    try:
        for count in (2, 20, 200):
            user = admin.unique("bg")
            upn = admin.add_user(user, PASSWORD)
            if count == 2:
                inner = admin.unique("bgB")
                admin.add_group(inner, user)
                admin.add_group(admin.unique("bgA"), inner)
            else:
                for i in range(count):
                    admin.add_group(admin.unique(f"bg{i:03d}-"), user)
            dn = admin.dn(user)
            verdict = validator.validate(upn, PASSWORD, groups=True)
            assert verdict.groups is not None and len(verdict.groups) >= count, verdict
            plain = timed(lambda upn=upn: validator.validate(upn, PASSWORD), args.rounds)
            grouped = timed(lambda upn=upn: validator.validate(upn, PASSWORD, groups=True), args.rounds)
            # The in-chain search, as one more request on a bound connection.
            in_chain = timed(lambda dn=dn, conn=admin.conn: conn.search(
                facts.base_dn, f"(member:{IN_CHAIN}:={escape_filter_chars(dn)})", search_scope=ldap3.SUBTREE,
                attributes=["objectGUID", "sAMAccountName"]), args.rounds)
            rows.append((count, len(verdict.groups), plain, grouped, in_chain))
    finally:
        validator.close()
        admin.close()
        if own:
            subprocess.run([sys.executable, str(ROOT / "scripts" / "ad_testbed.py"), "stop", "--dir", directory],
                           capture_output=True, check=False)
    print("| user in | groups read | sign-in without groups | with groups (tokenGroups + 1 search) | added "
          "| in-chain search alone |")
    print("| --- | --- | --- | --- | --- | --- |")
    for count, read, plain, grouped, chain in rows:
        print(f"| {count} groups | {read} | {plain[0]:.1f} (p95 {plain[1]:.1f}) | {grouped[0]:.1f} (p95 "
              f"{grouped[1]:.1f}) | {grouped[0] - plain[0]:+.1f} | {chain[0]:.1f} (p95 {chain[1]:.1f}) |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
