"""Simulated agents: many pta-agent connections in one process, speaking the real protocol, with a directory that
answers after a fixed cost instead of binding to AD (bench/fleet.py drives them; bench/README.md).

Each simulated agent is the real agent minus ldap3: it registers through the portal's real endpoint
(`pta_agent.registration.agent_register`: its own RSA key, a CSR, a certificate from the tenant's CA), and runs
`pta_agent.runner.AgentRunner` (challenge, proof of possession, hello, heartbeats, ack at once, the sealed request
opened with its key, the result), with SimulatedDirectory in place of the LDAP validator. So thousands of agents
fit on one machine, and what the portal does per agent is what it does for a real one.

    python bench/simagents.py register --portal URL --tokens FILE --out DIR [--workers 2]   # one config per token
    python bench/simagents.py run --configs FILE [--cost-ms 5]                              # until SIGTERM

The directory: every account of the agent's domains exists with the password FLEET_PASSWORD, except names that
start with "nobody" (unknown to the directory); a wrong password or an unknown name is AD's 52e, as a bind
gives. The user's objectGUID is derived from the UPN, so a user is the same person whichever agent answers.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import gc
import json
import logging
import signal
import sys
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "agents" / "onprem"))  # the agent's packages, as installed beside the portal

from pta_agent.config import config_load  # noqa: E402 - needs the path above when run from a checkout
from pta_agent.directory import DirectoryUser, Verdict  # noqa: E402
from pta_agent.identity import identity_load  # noqa: E402
from pta_agent.registration import RegisterOptions, agent_register  # noqa: E402
from pta_agent.runner import AgentRunner  # noqa: E402
from pta_protocol import Outcome  # noqa: E402

FLEET_PASSWORD = "Fleet-Pass-1"  # noqa: S105 - the simulated directory's one password, on loopback only
SIMULATED_LDAP_URL = "ldaps://directory.fleet.invalid:636"
GUID_NAMESPACE = uuid.UUID("6f1d2c57-2f0e-4c55-9a59-0d5b1b3c6e11")
WRONG_PASSWORD = "52e"


def directory_answer(username: str, password: str, domains: tuple[str, ...]) -> Verdict:
    """What the simulated directory says about one password: pure, so the tests check it without a portal."""
    name, _, domain = username.lower().partition("@")
    if domain not in domains or name.startswith("nobody") or password != FLEET_PASSWORD:
        return Verdict(Outcome.INVALID_CREDENTIALS, ad_subcode=WRONG_PASSWORD)
    upn = username.lower()
    return Verdict(Outcome.SUCCESS, user=DirectoryUser(object_guid=str(uuid.uuid5(GUID_NAMESPACE, upn)),
                                                       display_name=name, mail=upn, upn=upn))


class SimulatedDirectory:
    """The validator's interface (pta_agent.directory.DirectoryValidator's), answered after ``cost`` seconds."""

    can_change_passwords = False
    can_read_groups = False

    def __init__(self, domains: list[str], cost: float):
        self.domains = tuple(d.lower() for d in domains)
        self.cost = cost

    async def validate_async(self, username: str, password: str, *, deadline: float, groups: bool = False
                             ) -> Verdict:
        await asyncio.sleep(self.cost)
        return directory_answer(username, password, self.domains)

    async def account_state_async(self, upn: str, *, deadline: float, groups: bool = False) -> Verdict:
        await asyncio.sleep(self.cost)
        return directory_answer(upn, FLEET_PASSWORD, self.domains)

    async def change_password_async(self, *args, **kwargs) -> Verdict:
        return Verdict(Outcome.AGENT_ERROR, detail="no_service_account")

    async def reachable_async(self) -> dict[str, bool]:
        return {SIMULATED_LDAP_URL: True}

    def close(self) -> None:
        pass


class SimulatedAgent(AgentRunner):
    """One of many runners on one event loop: the process's signals stop them all (fleet_run), not each."""

    def _install_signal_handlers(self) -> None:
        pass


# --- registration -----------------------------------------------------------------------------------------

def _register_one(portal: str, token: str, config: str) -> str:
    agent_register(RegisterOptions(portal_url=portal, token=token, config_path=Path(config),
                                   ldap_urls=[SIMULATED_LDAP_URL], name=Path(config).parent.name, hostname="fleet"))
    return config


def register_fleet(*, portal: str, tokens: list[str], out: Path, workers: int = 2, first: int = 0) -> list[str]:
    """Register one agent per token through the portal's endpoint; returns the configs' paths. Key generation
    (RSA 2048) is most of the cost: it runs in ``workers`` processes."""
    configs = [str(out / f"agent-{first + i:05d}" / "agent.toml") for i in range(len(tokens))]
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(_register_one, [portal] * len(tokens), tokens, configs, chunksize=8))


# --- running ----------------------------------------------------------------------------------------------

def fleet_runners(configs: list[str], cost: float) -> list[SimulatedAgent]:
    runners = []
    for path in configs:
        config = config_load(Path(path))
        identity = identity_load(private_key_file=config.files.private_key, certificate_file=config.files.certificate,
                                 portal_signing_key_file=config.files.portal_signing_key)
        directory = SimulatedDirectory(config.agent.domains, cost)
        runners.append(SimulatedAgent(config, identity, directory))  # type: ignore[arg-type]  # duck-typed validator
    return runners


async def fleet_run(configs: list[str], cost: float) -> int:
    runners = fleet_runners(configs, cost)
    gc.collect()
    gc.freeze()
    loop = asyncio.get_running_loop()
    def stop_all() -> None:
        for runner in runners:
            runner.request_stop()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop_all)
    print(f"running {len(runners)} simulated agent(s)", flush=True)
    await asyncio.gather(*(runner.run() for runner in runners))
    return 0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    register = sub.add_parser("register")
    register.add_argument("--portal", required=True)
    register.add_argument("--tokens", required=True, help="a JSON list of one-time registration tokens")
    register.add_argument("--out", required=True)
    register.add_argument("--first", type=int, default=0, help="the first agent's number (directory names)")
    register.add_argument("--workers", type=int, default=2)
    run = sub.add_parser("run")
    run.add_argument("--configs", required=True, help="a JSON list of agent.toml paths")
    run.add_argument("--cost-ms", type=float, default=5.0, help="the simulated directory's time per answer")
    args = parser.parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(asctime)s %(levelname)s %(message)s")
    if args.command == "register":
        tokens = json.loads(Path(args.tokens).read_text())
        configs = register_fleet(portal=args.portal, tokens=tokens, out=Path(args.out), workers=args.workers,
                                 first=args.first)
        print(json.dumps(configs))
        return 0
    configs = json.loads(Path(args.configs).read_text())
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(fleet_run(configs, args.cost_ms / 1000))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
