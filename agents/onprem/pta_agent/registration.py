"""`pta-agent register`: make a key pair, trade a one-time token and a CSR for a certificate, write the config."""

from __future__ import annotations

import json
import logging
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pta_protocol as protocol
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from pta_agent import AGENT_VERSION
from pta_agent.config import (
    DEFAULT_LOGIN_ATTRIBUTE,
    AgentConfig,
    AgentSettings,
    DirectorySettings,
    PortalSettings,
    base_dn_for_domain,
    config_save,
    file_paths_for,
    portal_url_problem,
)
from pta_agent.identity import (
    certificate_load_pem,
    csr_build,
    private_key_generate,
    private_key_write,
    public_file_write,
)

logger = logging.getLogger(__name__)
REGISTER_TIMEOUT_SECONDS = 30


class RegistrationFailed(Exception):
    """Registration did not happen; the message tells the operator why and what to do."""


@dataclass(frozen=True)
class RegisterOptions:
    portal_url: str
    token: str
    config_path: Path
    ldap_urls: list[str]
    ldap_ca_file: str = ""
    login_attribute: str = DEFAULT_LOGIN_ATTRIBUTE
    name: str = ""
    base_dn: str = ""
    service_account: str = ""
    service_password_file: str = ""
    portal_ca_file: str = ""
    hostname: str = ""
    force: bool = False


def portal_ssl_context(ca_file: str) -> ssl.SSLContext:
    """Verify the portal against its own CA file when given, else against the system trust store."""
    return ssl.create_default_context(cafile=ca_file or None)


def agent_register(options: RegisterOptions) -> AgentConfig:
    # Before anything is written or sent: the token must never leave this machine in clear.
    if portal_problem := portal_url_problem(options.portal_url):
        raise RegistrationFailed(f"--portal {portal_problem}.")
    bad_urls = [url for url in options.ldap_urls if not url.startswith(("ldaps://", "ldap://"))]
    if bad_urls:
        raise RegistrationFailed(
            f"--ldap-url must be ldaps://HOST:636 (or ldap://, upgraded with StartTLS): {', '.join(bad_urls)}")
    config_path = options.config_path.resolve()
    files = file_paths_for(config_path)
    _refuse_to_overwrite(config_path, files.private_key, force=options.force)
    config_path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
    private_key = private_key_generate()
    hostname = options.hostname or socket.gethostname()
    # Written before the portal is asked, with mode 0600 from creation, and removed if registration fails.
    private_key_write(Path(files.private_key), private_key)
    try:
        answer = _post_registration(options, csr=csr_build(private_key, name=options.name or hostname),
                                    hostname=hostname)
        certificate = certificate_load_pem(answer["certificate"])
        if certificate.public_key() != private_key.public_key():
            raise RegistrationFailed("The portal's certificate is not for this agent's key; nothing was written.")
        _check_signing_key(answer["signing_public_key"])
    except BaseException:
        Path(files.private_key).unlink(missing_ok=True)
        raise
    public_file_write(Path(files.certificate), answer["certificate"])
    public_file_write(Path(files.tenant_ca), answer["ca_certificate"])
    public_file_write(Path(files.portal_signing_key), answer["signing_public_key"])
    config = _config_from(options, answer, files)
    config_save(config, config_path)
    return config


def _refuse_to_overwrite(config_path: Path, private_key_file: str, *, force: bool) -> None:
    existing = [str(p) for p in (config_path, Path(private_key_file)) if p.exists()]
    if existing and not force:
        raise RegistrationFailed(
            f"{', '.join(existing)} already exist(s): this agent is registered. Use --force to replace it "
            "(the old registration stays valid on the portal until an admin revokes it).")


def _post_registration(options: RegisterOptions, *, csr: str, hostname: str) -> dict:
    url = options.portal_url.rstrip("/") + protocol.REGISTER_PATH
    body = json.dumps({"token": options.token, "csr": csr, "name": options.name or hostname,
                       "hostname": hostname, "version": AGENT_VERSION}).encode("utf-8")
    # The URL is the operator's --portal: https://, or http:// to this machine (checked above).
    request = urllib.request.Request(url, data=body, method="POST",  # noqa: S310
                                     headers={"Content-Type": "application/json", "Accept": "application/json"})
    context = portal_ssl_context(options.portal_ca_file) if url.startswith("https://") else None
    try:
        with urllib.request.urlopen(request, timeout=REGISTER_TIMEOUT_SECONDS, context=context) as response:  # noqa: S310
            return _registration_answer(response.read())
    except urllib.error.HTTPError as exc:
        raise RegistrationFailed(_refusal_message(exc)) from None
    except urllib.error.URLError as exc:
        raise RegistrationFailed(f"Cannot reach the portal at {url}: {exc.reason}. Check --portal, "
                                 "the network, HTTPS_PROXY and --portal-ca-file.") from None
    except (TimeoutError, OSError) as exc:
        raise RegistrationFailed(f"Cannot reach the portal at {url}: {exc}.") from None


def _registration_answer(raw: bytes) -> dict:
    try:
        answer = json.loads(raw)
    except ValueError:
        raise RegistrationFailed("The portal's answer is not JSON: is --portal the portal's address?") from None
    required = ("agent_id", "tenant", "domains", "certificate", "ca_certificate", "signing_public_key")
    if not isinstance(answer, dict) or any(key not in answer for key in required):
        raise RegistrationFailed("The portal's answer lacks the agent's identity: is the portal up to date?")
    if not isinstance(answer["domains"], list) or not answer["domains"]:
        raise RegistrationFailed("The token names no verified domain for this agent to serve.")
    return answer


def _refusal_message(error: urllib.error.HTTPError) -> str:
    try:
        detail = json.loads(error.read() or b"{}")
    except ValueError:
        detail = {}
    message = detail.get("message") if isinstance(detail, dict) else None
    message = str(message).rstrip(".") if message else None
    if error.code == 403:
        return f"The portal refused the token: {message or 'unknown, expired or already used'}. Ask for a new one."
    return f"The portal refused the registration (HTTP {error.code}): {message or error.reason}."


def _check_signing_key(pem: str) -> None:
    try:
        key = serialization.load_pem_public_key(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        key = None
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise RegistrationFailed("The portal's request-signing key is not an Ed25519 public key.")


def _config_from(options: RegisterOptions, answer: dict, files) -> AgentConfig:
    domains = [str(domain) for domain in answer["domains"]]
    return AgentConfig(
        portal=PortalSettings(url=options.portal_url.rstrip("/"), ca_file=_absolute(options.portal_ca_file)),
        agent=AgentSettings(id=str(answer["agent_id"]), tenant=str(answer["tenant"]), domains=domains,
                            name=options.name),
        files=files,
        directory=DirectorySettings(
            ldap_urls=list(options.ldap_urls),
            ca_file=_absolute(options.ldap_ca_file),
            login_attribute=options.login_attribute,
            base_dn=options.base_dn or base_dn_for_domain(domains[0]),
            service_account=options.service_account,
            service_password_file=_absolute(options.service_password_file),
        ),
    )


def _absolute(path: str) -> str:
    return str(Path(path).resolve()) if path else ""
