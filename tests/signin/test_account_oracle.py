"""No account existence oracle on the sign-in pages (issue 20, 5a): for a domain no tenant verified, a name that is
a cloud account (a platform administrator, or a tenant's break-glass account whose tenant has a helpdesk contact and
a lockout of its own) and a name that is nobody are answered alike, page by page, guess by guess (the lockout and
its "what to do next" page included), and in about the same time (the password is hashed either way). Driven
through the portal's HTTP application as production routes it (signin.consumers.SignInRouter)."""

from __future__ import annotations

import re
import statistics
import time

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.core.asgi import get_asgi_application

from signin.consumers import SignInRouter
from signin.models import SignInEvent
from tenant.models import User
from tests.signin.test_session_fixation import Browser

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "R00t-pa55-for-tests"
HELPDESK = "it-helpdesk@alpha.example.test"


class TenthPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = PBKDF2PasswordHasher.iterations // 10


@pytest.fixture(params=["platform-admin", "break-glass"])
def account(request, transactional_db, settings, tenant_factory) -> tuple[str, str]:
    """A cloud account in a domain no tenant verified, and a name that is nobody in the same domain."""
    # The portal's own kind of hasher (the suite's cheap one would make both answers too quick to compare), at a
    # tenth of its iterations: the hash is still most of either guess's work, in a tenth of the time.
    settings.PASSWORD_HASHERS = ["tests.signin.test_account_oracle.TenthPBKDF2PasswordHasher"]
    if request.param == "platform-admin":
        User.objects.create_superuser("root@platform.test", PASSWORD)
        return "root@platform.test", "nobody@platform.test"
    # A tenant's break-glass account left in a domain the tenant no longer has: its tenant has a helpdesk contact
    # and help text, and locks for longer than the platform does (not after more guesses: that residual is named
    # in docs/SECURITY.md, 5a).
    tenant = tenant_factory("Alpha Corp", ["alpha.example.test", "old-alpha.test"])
    tenant.helpdesk_contact, tenant.help_text = HELPDESK, "Alpha's help text"
    tenant.lockout_threshold = settings.PTA_PLATFORM_LOCKOUT_THRESHOLD
    tenant.lockout_duration_seconds = settings.PTA_PLATFORM_LOCKOUT_SECONDS * 30
    tenant.save()
    User.objects.create_user("break-glass@old-alpha.test", PASSWORD, tenant=tenant, is_staff=True,
                             source=User.Source.CLOUD)
    tenant.domains.get(name="old-alpha.test").delete()
    return "break-glass@old-alpha.test", "nobody@old-alpha.test"


def seen(response: dict, name: str) -> dict:
    """What the attacker sees, with the name they typed and the per-render CSRF token taken out."""
    text = response["text"].replace(name, "<name>")
    text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', 'name="csrfmiddlewaretoken" value=""', text)
    # The clock time a lock ends depends on when the guess that set it came, not on the account: masked. The rest
    # of the line (how long, or that it is not said) is compared.
    text = re.sub(r'(<p id="lock-ends">[^<]*)<time [^>]*>[^<]*</time>', r'\1<time></time>', text)
    headers = sorted((k.decode().lower(), v.decode()) for k, v in response["headers"]
                     if k.decode().lower() not in ("set-cookie", "expires", "content-length"))
    return {"status": response["status"], "headers": headers, "body": text}


async def test_a_cloud_account_and_nobody_are_answered_alike(account):
    ACCOUNT, NOBODY = account
    app = SignInRouter(get_asgi_application())
    pages: dict[str, list[dict]] = {ACCOUNT: [], NOBODY: []}
    times: dict[str, list[float]] = {ACCOUNT: [], NOBODY: []}
    browsers = {name: Browser(app) for name in pages}
    for name, browser in browsers.items():
        pages[name].append(seen(await browser.username(name), name))
        pages[name].append(seen(await browser.get("/login/password/"), name))
    for guess in range(4):  # interleaved, so both see the same load; under the platform's threshold (5)
        for name, browser in browsers.items():
            started = time.process_time()
            answer = await browser.password(f"wrong-{guess}")
            times[name].append(time.process_time() - started)
            pages[name].append(seen(answer, name))
    assert pages[ACCOUNT] == pages[NOBODY]
    assert 'data-outcome="invalid_credentials"' in pages[NOBODY][-1]["body"]

    # The same work: the password is hashed for nobody too (PBKDF2 is most of a cloud account's guess). Measured as
    # this process's CPU time (the application runs in it), which is what an idle server's answer time is made of
    # and which other processes on a busy machine do not stretch.
    account, nobody = statistics.median(times[ACCOUNT]), statistics.median(times[NOBODY])
    assert nobody > 0.6 * account, f"nobody's guess took {nobody:.3f} s of CPU, the account's {account:.3f} s"

    # The same lockout: the threshold's guess locks both, and the right password no longer tells either.
    for name, browser in browsers.items():
        pages[name].append(seen(await browser.password("wrong-5"), name))
        pages[name].append(seen(await browser.password(PASSWORD if name == ACCOUNT else "R00t-pa55"), name))
    assert pages[ACCOUNT][-2:] == pages[NOBODY][-2:]
    assert 'data-outcome="cloud_locked"' in pages[NOBODY][-1]["body"]
    assert 'id="lock-ends"' in pages[NOBODY][-1]["body"] and 'id="lock-ends"' in pages[ACCOUNT][-1]["body"]
    # How long is not said for such a domain (a break-glass account locks for its tenant's time, nobody for the
    # platform's: minutes would tell them apart).
    assert '<p id="lock-ends">You can try again later.</p>' in pages[ACCOUNT][-1]["body"]
    # Whom to ask is the domain's tenant's (none here), not the account's: the generic sentence for both.
    assert HELPDESK not in pages[ACCOUNT][-1]["body"] and "Alpha" not in pages[ACCOUNT][-1]["body"]
    # The operator still tells them apart: the record of a guess at nobody names no user.
    assert not await SignInEvent.objects.filter(username=NOBODY, user__isnull=False).aexists()
    assert await SignInEvent.objects.filter(username=ACCOUNT, user__isnull=False).aexists()
