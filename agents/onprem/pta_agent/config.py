"""The agent's configuration file (TOML): everything `pta-agent run` needs, written by `pta-agent register`."""

from __future__ import annotations

import ipaddress
import os
import urllib.parse
from pathlib import Path
from typing import Annotated

import msgspec

DEFAULT_CAPACITY = 32
DEFAULT_POOL_SIZE = 8
DEFAULT_REQUEST_DEADLINE_SECONDS = 10.0
DEFAULT_SHUTDOWN_GRACE_SECONDS = 10.0
DEFAULT_LDAP_TIMEOUT_SECONDS = 5.0
DEFAULT_LOGIN_ATTRIBUTE = "userPrincipalName"


class ConfigError(Exception):
    """The configuration file is missing, unreadable or incomplete; the message says which."""


class _Settings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The file is read strictly: a value of the wrong type (``capacity = "32"``), a missing or an unknown key
    stops the agent at start-up with the key's name, rather than misbehaving later."""


AtLeastOne = Annotated[int, msgspec.Meta(ge=1)]


class PortalSettings(_Settings, frozen=True):
    url: str
    ca_file: str = ""  # empty: verify the portal against the system trust store


class AgentSettings(_Settings, frozen=True):
    id: str
    tenant: str
    domains: list[str]
    name: str = ""
    capacity: AtLeastOne = DEFAULT_CAPACITY
    request_deadline_seconds: float = DEFAULT_REQUEST_DEADLINE_SECONDS
    shutdown_grace_seconds: float = DEFAULT_SHUTDOWN_GRACE_SECONDS


class FileSettings(_Settings, frozen=True):
    private_key: str
    certificate: str
    tenant_ca: str
    portal_signing_key: str


class DirectorySettings(_Settings, frozen=True):
    ldap_urls: list[str]
    ca_file: str = ""  # empty: verify the DCs against the system trust store
    login_attribute: str = DEFAULT_LOGIN_ATTRIBUTE
    base_dn: str = ""
    service_account: str = ""
    service_password_file: str = ""
    pool_size: AtLeastOne = DEFAULT_POOL_SIZE
    connect_timeout_seconds: float = DEFAULT_LDAP_TIMEOUT_SECONDS
    receive_timeout_seconds: float = DEFAULT_LDAP_TIMEOUT_SECONDS
    # Read each signed-in user's transitive groups for the portal (tokenGroups: docs/agent.md, "Groups"). False:
    # the agent announces no "groups" capability, as an older agent, and the portal says so.
    groups: bool = True

    @property
    def uses_alternate_id(self) -> bool:
        return self.login_attribute.lower() != DEFAULT_LOGIN_ATTRIBUTE.lower()


class AgentConfig(_Settings, frozen=True):
    """The whole file, one section per concern."""

    portal: PortalSettings
    agent: AgentSettings
    files: FileSettings
    directory: DirectorySettings


def portal_url_problem(url: str) -> str:
    """Why the agent must not use this portal URL, or "" when it may: https://, or http:// to this machine only.

    Over plain HTTP the registration token, and later the agent's WebSocket, would cross the network readable
    and alterable by anyone on the path."""
    scheme = "https" if url.startswith("https://") else "http" if url.startswith("http://") else ""
    try:
        host = urllib.parse.urlsplit(url).hostname or ""
    except ValueError:
        host = ""
    if url.lower().startswith(("ws://", "wss://")):
        # The WebSocket URL is derived (https:// → wss://): a ws:// given here would be plain text anywhere.
        return (f"{url!r} is a WebSocket URL: give the portal's https:// URL (e.g. https://portal.example.com); "
                "the agent connects to its wss:// WebSocket itself")
    if not scheme or not host:
        return (f"{url!r} is not an https:// URL of the portal (e.g. https://portal.example.com; http:// only "
                "for a portal on this machine)")
    if scheme == "http" and not host_is_loopback(host):
        return (f"{url!r} is plain http:// to another machine ({host}): the registration token and the agent's "
                "connection would cross the network unencrypted. Use the portal's https:// URL "
                "(http:// is accepted only for a portal on this machine: 127.0.0.1, ::1, localhost)")
    return ""


def host_is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or the name localhost: traffic that never leaves this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def base_dn_for_domain(domain: str) -> str:
    """corp.example.test → DC=corp,DC=example,DC=test (the usual AD naming context of a DNS domain)."""
    labels = [label for label in domain.strip().strip(".").split(".") if label]
    return ",".join(f"DC={label}" for label in labels)


def file_paths_for(config_path: Path) -> FileSettings:
    """Key material lives next to the config file, named after it (agent.toml → agent-key.pem, …)."""
    directory, stem = config_path.resolve().parent, config_path.stem
    return FileSettings(
        private_key=str(directory / f"{stem}-key.pem"),
        certificate=str(directory / f"{stem}-cert.pem"),
        tenant_ca=str(directory / f"{stem}-tenant-ca.pem"),
        portal_signing_key=str(directory / f"{stem}-portal-signing.pem"),
    )


def config_to_toml(config: AgentConfig) -> str:
    return msgspec.toml.encode(config).decode("utf-8")


def config_save(config: AgentConfig, path: Path) -> None:
    """Written to a temporary file and renamed: a crash never leaves half a config behind."""
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)  # no secrets, but not for everyone
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(config_to_toml(config))
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def config_load(path: Path) -> AgentConfig:
    try:
        text = Path(path).read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"No configuration at {path}: run `pta-agent register` first.") from None
    except OSError as exc:
        raise ConfigError(f"Cannot read the configuration {path}: {exc.strerror}.") from None
    try:
        config = msgspec.toml.decode(text, type=AgentConfig, strict=True)
    except msgspec.ValidationError as exc:  # names the key: "Expected `int`, got `str` - at `$.agent.capacity`"
        raise ConfigError(f"The configuration {path} is not usable: {exc}.") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"The configuration {path} is not valid TOML: {exc}.") from None
    _check(config, path)
    return config


def _check(config: AgentConfig, path: Path) -> None:
    problems = []
    if portal_problem := portal_url_problem(config.portal.url):
        problems.append(f"portal.url {portal_problem}")
    if not config.directory.ldap_urls:
        problems.append("directory.ldap_urls must list at least one DC")
    if any(not url.startswith(("ldaps://", "ldap://")) for url in config.directory.ldap_urls):
        problems.append("directory.ldap_urls must be ldaps:// (or ldap://, always upgraded with StartTLS)")
    if config.directory.uses_alternate_id and not (
            config.directory.service_account and config.directory.service_password_file and config.directory.base_dn):
        problems.append("an alternate login attribute needs directory.service_account, "
                        "directory.service_password_file and directory.base_dn")
    if problems:
        raise ConfigError(f"The configuration {path} is not usable: " + "; ".join(problems) + ".")
