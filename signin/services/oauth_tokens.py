"""What the OpenID provider revokes, and the record that makes it possible.

- An authorization code used twice revokes the tokens issued from it (RFC 6749 §4.1.2). DOT deletes the code's
  Grant on first use, so nothing links a code to its tokens afterwards: on the exchange we keep, in the cache
  (Redis in production, shared by every node), ``sha256(code)`` → the access token's id and its refresh token's
  family, for as long as the access token lives. A second exchange finds the record and revokes the access
  token, every refresh token of the family (rotations included), the access tokens they minted and their ID
  tokens. After that window a replay is only refused.
- RP-initiated logout revokes what the signed-in user holds at the application that asked, nothing elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import re
import uuid
from typing import TypeGuard

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_id_token_model, get_refresh_token_model
from oauth2_provider.settings import oauth2_settings

log = logging.getLogger(__name__)

# RFC 7636 §4.1: a code_verifier is 43 to 128 unreserved characters; an S256 challenge (43) follows the same rule.
PKCE_VALUE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")


def pkce_value_well_formed(value: str | None) -> TypeGuard[str]:
    return value is not None and PKCE_VALUE.fullmatch(value) is not None


def _code_key(code: str) -> str:
    return "oidc:code-tokens:" + hashlib.sha256(code.encode()).hexdigest()


def code_record_seconds() -> int:
    """How long a spent code's record is kept: as long as the access token issued from it lives."""
    return max(oauth2_settings.AUTHORIZATION_CODE_EXPIRE_SECONDS, oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS)


def authorization_code_tokens_record(*, code: str, access_token: str) -> None:
    """Remember which tokens ``code`` bought (called once they are saved, before the code is spent)."""
    token = (get_access_token_model().objects.filter(token_checksum=hashlib.sha256(access_token.encode()).hexdigest())
             .only("pk").first())
    if token is None:
        return
    family = (get_refresh_token_model().objects.filter(access_token=token)
              .values_list("token_family", flat=True).first())
    key = _code_key(code)
    record = cache.get(key) or {"access_tokens": [], "families": []}
    record["access_tokens"].append(token.pk)
    if family:
        record["families"].append(str(family))
    cache.set(key, record, code_record_seconds())


@transaction.atomic
def authorization_code_tokens_revoke(*, code: str) -> bool:
    """``code`` was presented again after it was spent: revoke everything issued from it. False when no record
    (a code never spent, unknown, or spent longer ago than the record lives)."""
    record = cache.get(_code_key(code))
    if not record:
        return False
    AccessToken, RefreshToken, IDToken = get_access_token_model(), get_refresh_token_model(), get_id_token_model()
    families = [uuid.UUID(family) for family in record["families"]]
    in_family = RefreshToken.objects.filter(token_family__in=families)
    access_ids = list(AccessToken.objects.filter(
        Q(pk__in=record["access_tokens"]) | Q(source_refresh_token__in=in_family)
        | Q(pk__in=in_family.exclude(access_token=None).values("access_token_id"))).values_list("pk", flat=True))
    id_token_ids = list(AccessToken.objects.filter(pk__in=access_ids).exclude(id_token=None)
                        .values_list("id_token_id", flat=True))
    now = timezone.now()
    in_family.filter(revoked__isnull=True).update(revoked=now, updated=now)
    AccessToken.objects.filter(pk__in=access_ids).delete()
    IDToken.objects.filter(pk__in=id_token_ids).delete()
    cache.delete(_code_key(code))
    log.warning("An authorization code was used twice: the %d access token(s) issued from it are revoked",
                len(access_ids))
    return True


@transaction.atomic
def application_tokens_revoke(*, user, application) -> None:
    """RP-initiated logout: the refresh, access and ID tokens ``user`` holds at ``application``, nothing else."""
    now = timezone.now()
    get_refresh_token_model().objects.filter(user=user, application=application, revoked__isnull=True).update(
        revoked=now, updated=now)
    get_access_token_model().objects.filter(user=user, application=application).delete()
    get_id_token_model().objects.filter(user=user, application=application).delete()
