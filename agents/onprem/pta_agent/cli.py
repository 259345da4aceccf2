"""The `pta-agent` command: register, run, status. Exit codes: 0 ok, 1 unhealthy, 2 usage/setup error,
3 the portal ended this agent (revoked, unknown or expired certificate) — do not restart it."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
from pathlib import Path

from pta_agent import AGENT_VERSION
from pta_agent.config import DEFAULT_LOGIN_ATTRIBUTE, AgentConfig, ConfigError, config_load
from pta_agent.directory import DirectoryOptions, DirectoryValidator
from pta_agent.identity import AgentIdentity, IdentityError, identity_load
from pta_agent.registration import RegisterOptions, RegistrationFailed, agent_register, portal_ssl_context
from pta_agent.runner import EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE, AgentRunner
from pta_agent.status import agent_status

logger = logging.getLogger("pta-agent")


class SetupError(Exception):
    """Something the operator must fix before the agent can start; printed, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pta-agent", description="Pass-through authentication agent.")
    parser.add_argument("--version", action="version", version=f"pta-agent {AGENT_VERSION}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True)

    register = commands.add_parser("register", help="register this agent with the portal (one-time token)")
    register.add_argument("--portal", required=True, help="the portal's base URL, e.g. https://portal.example.com "
                          "(http:// only for a portal on this machine)")
    register.add_argument("--token", required=True, help="the one-time registration token from the portal admin")
    register.add_argument("--config", required=True, type=Path, help="where to write the TOML config")
    register.add_argument("--ldap-url", required=True, action="append", dest="ldap_urls",
                          help="a DC, ldaps://HOST:636 (repeat for failover, in order of preference)")
    register.add_argument("--ca-file", default="", help="PEM bundle that verifies the DCs' certificates")
    register.add_argument("--login-attribute", default=DEFAULT_LOGIN_ATTRIBUTE,
                          help="attribute users sign in with (default userPrincipalName; e.g. mail for Alternate ID)")
    register.add_argument("--name", default="", help="the agent's name on the portal (default: the hostname)")
    register.add_argument("--base-dn", default="", help="search base (default: from the first domain)")
    register.add_argument("--service-account", default="", help="UPN of the account that searches (Alternate ID)")
    register.add_argument("--service-password-file", default="", help="file holding that account's password")
    register.add_argument("--portal-ca-file", default="", help="PEM bundle that verifies the portal (default: system)")
    register.add_argument("--force", action="store_true", help="replace an existing registration in --config")

    run = commands.add_parser("run", help="connect to the portal and serve sign-ins until stopped")
    run.add_argument("--config", required=True, type=Path)

    status = commands.add_parser("status", help="print identity and health; exit 0 when healthy")
    status.add_argument("--config", required=True, type=Path)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("websockets").setLevel(logging.WARNING)  # its debug lines would echo frames
    logging.getLogger("ldap3").setLevel(logging.WARNING)
    try:
        return {"register": command_register, "run": command_run, "status": command_status}[args.command](args)
    except (SetupError, ConfigError, IdentityError, RegistrationFailed) as exc:
        print(f"pta-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE


def command_register(args: argparse.Namespace) -> int:
    if args.login_attribute.lower() != DEFAULT_LOGIN_ATTRIBUTE.lower() and not (
            args.service_account and args.service_password_file):
        raise SetupError("--login-attribute other than userPrincipalName needs --service-account and "
                         "--service-password-file (the agent searches for the account first).")
    if bool(args.service_account) != bool(args.service_password_file):
        raise SetupError("--service-account and --service-password-file go together.")
    if args.service_password_file:
        _read_secret(args.service_password_file)  # fail now, not at the first sign-in
    config = agent_register(RegisterOptions(
        portal_url=args.portal, token=args.token, config_path=args.config, ldap_urls=args.ldap_urls,
        ldap_ca_file=args.ca_file, login_attribute=args.login_attribute, name=args.name, base_dn=args.base_dn,
        service_account=args.service_account, service_password_file=args.service_password_file,
        portal_ca_file=args.portal_ca_file, force=args.force,
    ))
    print(f"registered agent {config.agent.id} for tenant {config.agent.tenant} "
          f"(domains: {', '.join(config.agent.domains)})")
    print(f"config written to {args.config}; start it with: pta-agent run --config {args.config}")
    return EXIT_OK


def command_run(args: argparse.Namespace) -> int:
    config = config_load(args.config)
    identity = _identity(config)
    validator = DirectoryValidator(directory_options(config))
    ssl_context = portal_ssl_context(config.portal.ca_file) if config.portal.url.startswith("https") else None
    runner = AgentRunner(config, identity, validator, ssl_context=ssl_context)
    logger.info("pta-agent %s starting: agent %s, tenant %s, domains %s", AGENT_VERSION, config.agent.id,
                config.agent.tenant, ", ".join(config.agent.domains))
    gc.collect()  # what start-up built lives as long as the process: out of sight, full collections need not walk it
    gc.freeze()
    return asyncio.run(runner.run())


def command_status(args: argparse.Namespace) -> int:
    config = config_load(args.config)
    validator = DirectoryValidator(directory_options(config, with_secret=False))
    try:
        status = agent_status(config, _identity(config), validator.reachable)
    finally:
        validator.close()
    print("\n".join(status.lines()))
    return EXIT_OK if status.healthy else EXIT_UNHEALTHY


def directory_options(config: AgentConfig, *, with_secret: bool = True) -> DirectoryOptions:
    directory = config.directory
    secret = _read_secret(directory.service_password_file) if with_secret and directory.service_password_file else ""
    return DirectoryOptions(
        ldap_urls=list(directory.ldap_urls), ca_file=directory.ca_file, login_attribute=directory.login_attribute,
        base_dn=directory.base_dn, service_account=directory.service_account, service_password=secret,
        pool_size=directory.pool_size, connect_timeout_seconds=directory.connect_timeout_seconds,
        receive_timeout_seconds=directory.receive_timeout_seconds, workers=config.agent.capacity,
        read_groups=directory.groups,
    )


def _identity(config: AgentConfig) -> AgentIdentity:
    return identity_load(private_key_file=config.files.private_key, certificate_file=config.files.certificate,
                         portal_signing_key_file=config.files.portal_signing_key)


def _read_secret(path: str) -> str:
    try:
        secret = Path(path).read_text(encoding="utf-8").rstrip("\r\n")  # editors add a final newline
    except OSError as exc:
        raise SetupError(f"Cannot read the service account password file {path}: {exc.strerror}.") from None
    if not secret:
        raise SetupError(f"The service account password file {path} is empty.")
    return secret


if __name__ == "__main__":
    sys.exit(main())
