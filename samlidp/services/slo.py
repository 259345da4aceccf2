"""Front-channel logout of the session's SAML service providers when the portal session ends elsewhere than at an
SP (the portal's ``/logout/``, OpenID Connect's end-session): a signed LogoutRequest for each SP the session signed
in to that registered an SLO URL, kept NOTICE_SECONDS under a one-time notice that a frame of the signed-out page
redeems (the page posts it to the SP's SLO URL).

    slo_notices_issue(session=…, tenant=…)   # [{"src": the notice's URL, "name": the application,
                                             #   "origin": the SLO URL's, where the frame posts}]
    slo_notice_redeem(tenant=…, notice=…)    # {"action": SLO URL, "saml_request": base64} once, else None
"""

from __future__ import annotations

import base64
import secrets
from urllib.parse import urlsplit

from django.core.cache import cache
from django.urls import reverse

from samlidp.selectors import service_provider_by_pk
from samlidp.services.idp import logout_request_xml
from samlidp.services.sso import sso_participants
from tenant.models import Tenant

NOTICE_PREFIX = "pta:saml:slo-notice:"
NOTICE_SECONDS = 120  # the signed-out page loads its frames at once


def slo_notices_issue(*, session, tenant: Tenant) -> list[dict]:
    notices = []
    for pk, seen in sso_participants(session=session).items():
        sp = service_provider_by_pk(tenant=tenant, pk=pk)
        if sp is None or not sp.slo_url:
            continue
        xml = logout_request_xml(tenant=tenant, sp=sp, name_id=seen["name_id"], name_id_format=seen["format"],
                                 session_index=seen.get("session_index", ""))
        notice = secrets.token_urlsafe(24)
        cache.set(f"{NOTICE_PREFIX}{notice}", {"tenant": str(tenant.pk), "action": sp.slo_url,
                                               "saml_request": base64.b64encode(xml.encode()).decode()},
                  timeout=NOTICE_SECONDS)
        parts = urlsplit(sp.slo_url)
        notices.append({"src": reverse("samlidp:slo-notice", args=[tenant.slug, notice]),
                        "name": sp.application.name,
                        # the frame goes on there: the signed-out page's frame-src must name it
                        "origin": f"{parts.scheme}://{parts.netloc}"})
    return notices


def slo_notice_redeem(*, tenant: Tenant, notice: str) -> dict | None:
    """The LogoutRequest behind a notice, once (None: unknown, expired, used, or another tenant's)."""
    if not notice or len(notice) > 64:
        return None
    key = f"{NOTICE_PREFIX}{notice}"
    found = cache.get(key)
    if not isinstance(found, dict) or found.get("tenant") != str(tenant.pk) or not cache.delete(key):
        return None  # the delete that succeeds is the one use
    return found
