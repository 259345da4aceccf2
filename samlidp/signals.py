"""The portal's own sign-out (``/logout/``, OpenID Connect's end-session) tells the session's SAML service providers
too: before the session is flushed, each SP it signed in to that registered an SLO URL gets a signed LogoutRequest
under a one-time notice, which the signed-out page loads in a hidden frame (front-channel, as SAML single logout
tells the other SPs)."""

from __future__ import annotations

import logging

from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from samlidp.services.slo import slo_notices_issue
from signin.services.logout import FRONT_CHANNEL_LOGOUT_ATTR

logger = logging.getLogger(__name__)


@receiver(user_logged_out, dispatch_uid="samlidp.front_channel_logout")
def front_channel_logout(sender, request=None, user=None, **kwargs) -> None:
    tenant = getattr(user, "tenant", None) if user is not None else None
    if request is None or tenant is None or not hasattr(request, "session"):
        return
    try:
        notices = slo_notices_issue(session=request.session, tenant=tenant)
    except Exception:  # a sign-out never fails for it: the SPs are not told, the portal session still ends
        logger.exception("SAML front-channel logout notices for tenant %s could not be made", tenant.slug)
        return
    if notices:
        setattr(request, FRONT_CHANNEL_LOGOUT_ATTR, notices)
