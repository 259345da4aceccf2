import logging
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from oauth2_provider.generators import generate_client_secret

from applications.models import Application
from tenant.models import Tenant

logger = logging.getLogger(__name__)

GRANTS = {"authorization-code": Application.GRANT_AUTHORIZATION_CODE, "password": Application.GRANT_PASSWORD}


@sensitive_variables("secret")
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
    secret = application_secret_issue(application=application)
    application.full_clean()
    application.save()
    return application, secret


@sensitive_variables("secret")
def application_secret_issue(*, application: Application) -> str:
    """Gives an unsaved application its first client secret: returns it in clear (to be shown once; saving keeps
    only its hash, DOT's ``ClientSecretField``), or "" for a public client, which has none."""
    secret = "" if application.client_type == Application.CLIENT_PUBLIC else generate_client_secret()
    application.client_secret, application.hash_client_secret = secret, True
    return secret


@sensitive_variables("secret")
@transaction.atomic
def application_secret_rotate(*, application: Application, actor: str) -> str:
    """Replaces a confidential application's client secret with a new one and returns it in clear (shown once;
    only its hash is saved). The old secret fails at the token endpoint from this commit on; tokens already
    issued live on (refreshing one needs the client's secret, so the new one). ``actor`` names who asked, for
    the log."""
    if application.client_type != Application.CLIENT_CONFIDENTIAL:
        raise ValidationError("A public client has no client secret to rotate: it signs in with PKCE alone.")
    secret = generate_client_secret()
    application.client_secret, application.hash_client_secret = secret, True
    application.secret_rotated_at = timezone.now()
    application.save(update_fields=["client_secret", "hash_client_secret", "secret_rotated_at", "updated"])
    logger.info("client secret of application %s (%s, tenant %s) rotated by %s", application.client_id,
                application.name, application.tenant_id, actor)
    return secret


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
