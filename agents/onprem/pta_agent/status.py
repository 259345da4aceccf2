"""`pta-agent status`: identity, certificate expiry, and whether the portal and each DC answer right now."""

from __future__ import annotations

import datetime
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from pta_agent.config import AgentConfig
from pta_agent.identity import AgentIdentity
from pta_agent.registration import portal_ssl_context

PORTAL_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class AgentStatus:
    config: AgentConfig
    not_after: datetime.datetime
    portal_answer: str  # "" when the portal does not answer
    portal_problem: str
    dcs: dict[str, bool] = field(default_factory=dict)
    password_change: str = "not checked"  # why it is not available, or "" when it is
    now: datetime.datetime = field(default_factory=lambda: datetime.datetime.now(datetime.UTC))

    @property
    def days_left(self) -> int:
        return (self.not_after - self.now).days

    @property
    def certificate_valid(self) -> bool:
        return self.not_after > self.now

    @property
    def healthy(self) -> bool:
        """Healthy: a valid certificate, the portal answers, and every configured DC answers."""
        return self.certificate_valid and bool(self.portal_answer) and bool(self.dcs) and all(self.dcs.values())

    def lines(self) -> list[str]:
        agent = self.config.agent
        certificate = (f"valid until {self.not_after:%Y-%m-%d %H:%M} UTC ({self.days_left} days left)"
                       if self.certificate_valid else f"EXPIRED on {self.not_after:%Y-%m-%d %H:%M} UTC")
        portal = (f"answers ({self.portal_answer})" if self.portal_answer
                  else f"does NOT answer: {self.portal_problem}")
        lines = [
            f"agent        {agent.id}" + (f" ({agent.name})" if agent.name else ""),
            f"tenant       {agent.tenant}",
            f"domains      {', '.join(agent.domains)}",
            f"certificate  {certificate}",
            f"portal       {self.config.portal.url} {portal}",
        ]
        lines += [f"DC           {url} {'answers' if ok else 'does NOT answer'}" for url, ok in self.dcs.items()]
        lines.append("password change  " + (f"available (service account {self.config.directory.service_account})"
                                            if not self.password_change else f"not available: {self.password_change}"))
        lines.append(f"status       {'healthy' if self.healthy else 'UNHEALTHY'}")
        return lines


def portal_answers(config: AgentConfig) -> tuple[str, str]:
    """(answer, "") when the portal's base URL answers HTTP below 500, else ("", why not)."""
    url = config.portal.url.rstrip("/") + "/"
    context: ssl.SSLContext | None = portal_ssl_context(config.portal.ca_file) if url.startswith("https") else None
    try:
        with urllib.request.urlopen(url, timeout=PORTAL_TIMEOUT_SECONDS, context=context) as response:  # noqa: S310
            return f"HTTP {response.status}", ""
    except urllib.error.HTTPError as exc:
        return (f"HTTP {exc.code}", "") if exc.code < 500 else ("", f"HTTP {exc.code}")
    except urllib.error.URLError as exc:
        return "", str(exc.reason)
    except (OSError, TimeoutError) as exc:
        return "", str(exc) or type(exc).__name__


def password_change_problem(config: AgentConfig) -> str:
    """Why this agent cannot change expired and must-change passwords ("" when it can): it needs its service
    account, whose password file it reads at start (never printed), and a search base."""
    directory = config.directory
    if not (directory.service_account and directory.service_password_file):
        return "no service account (register with --service-account and --service-password-file)"
    if not directory.base_dn:
        return "no directory.base_dn to find users in"
    if not os.access(directory.service_password_file, os.R_OK):
        return f"cannot read the service account password file {directory.service_password_file}"
    return ""


def agent_status(config: AgentConfig, identity: AgentIdentity,
                 dc_probe: Callable[[], dict[str, bool]]) -> AgentStatus:
    answer, problem = portal_answers(config)
    return AgentStatus(config=config, not_after=identity.not_after, portal_answer=answer, portal_problem=problem,
                       dcs=dc_probe(), password_change=password_change_problem(config))
