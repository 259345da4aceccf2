from collections.abc import Iterable

from django.db import transaction

from applications.models import Application
from tenant.models import Tenant

GRANTS = {"authorization-code": Application.GRANT_AUTHORIZATION_CODE, "password": Application.GRANT_PASSWORD}


@transaction.atomic
def application_register(*, tenant: Tenant, name: str, redirect_uris: Iterable[str] = (), public: bool = False,
                         grant: str = "authorization-code", allowed_origins: Iterable[str] = (),
                         post_logout_redirect_uris: Iterable[str] | None = None,
                         require_mfa: bool = False) -> tuple[Application, str]:
    """A tenant's application; returns it and its client secret in clear (shown once: only a hash is kept),
    empty for a public client. ID tokens are signed with RS256; the tenant's own applications skip the
    consent page (the tenant's administrators registered them). ``allowed_origins`` (https://host[:port]) are
    the browser origins that may call /token/ and /userinfo/ (CORS), for browser-only clients.
    ``post_logout_redirect_uris`` are where RP-initiated logout may send the browser back; None (not given): the
    redirect URIs, as before the option existed. ``require_mfa``: its users need a second factor whatever the
    tenant's MFA policy."""
    redirect_uris = list(redirect_uris)
    after_logout = redirect_uris if post_logout_redirect_uris is None else list(post_logout_redirect_uris)
    application = Application(
        tenant=tenant, name=name.strip(), redirect_uris=" ".join(redirect_uris),
        post_logout_redirect_uris=" ".join(after_logout),
        client_type=Application.CLIENT_PUBLIC if public else Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=GRANTS[grant], algorithm=Application.RS256_ALGORITHM, skip_authorization=True,
        allowed_origins=" ".join(allowed_origins), require_mfa=require_mfa,
    )
    secret = "" if public else application.client_secret
    if public:
        application.client_secret = ""
    application.full_clean()
    application.save()
    return application, secret


def application_access_set(*, application: Application, require_mfa: bool | None = None) -> Application:
    """Change who may use an application and how (what is not given stays as it is): ``require_mfa``, a second
    factor for it whatever the tenant's MFA policy."""
    changes: dict[str, object] = {}
    if require_mfa is not None:
        changes["require_mfa"] = require_mfa
    for name, value in changes.items():
        setattr(application, name, value)
    if changes:
        application.save(update_fields=[*changes, "updated"])
    return application
