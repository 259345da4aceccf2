"""No account existence oracle on the sign-in pages (issue 20, 5a): for a domain no tenant verified, a name that is
a cloud account (here a platform administrator) and a name that is nobody are answered alike, page by page, guess
by guess (the lockout included), and in about the same time (the password is hashed either way). Driven through
the portal's HTTP application as production routes it (signin.consumers.SignInRouter)."""

from __future__ import annotations

import re
import statistics
import time

import pytest
from django.conf import global_settings
from django.core.asgi import get_asgi_application

from signin.consumers import SignInRouter
from signin.models import SignInEvent
from tenant.models import User
from tests.signin.test_session_fixation import Browser

pytestmark = pytest.mark.django_db(transaction=True)
ACCOUNT, NOBODY = "root@platform.test", "nobody@platform.test"  # platform.test: no tenant verified it
PASSWORD = "R00t-pa55-for-tests"


@pytest.fixture
def platform_admin(transactional_db, settings):
    # The portal's own hashers (the suite's cheap one would make both answers too quick to compare).
    settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS
    return User.objects.create_superuser(ACCOUNT, PASSWORD)  # Django's default hasher: PBKDF2


def seen(response: dict, name: str) -> dict:
    """What the attacker sees, with the name they typed and the per-render CSRF token taken out."""
    text = response["text"].replace(name, "<name>")
    text = re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', 'name="csrfmiddlewaretoken" value=""', text)
    # When a lock ends depends on when the guess that set it came (the minute it was made), not on the account.
    text = re.sub(r'<p id="lock-ends">.*?</p>', '<p id="lock-ends"></p>', text)
    headers = sorted((k.decode().lower(), v.decode()) for k, v in response["headers"]
                     if k.decode().lower() not in ("set-cookie", "expires", "content-length"))
    return {"status": response["status"], "headers": headers, "body": text}


async def test_a_cloud_account_and_nobody_are_answered_alike(platform_admin):
    app = SignInRouter(get_asgi_application())
    pages: dict[str, list[dict]] = {ACCOUNT: [], NOBODY: []}
    times: dict[str, list[float]] = {ACCOUNT: [], NOBODY: []}
    browsers = {name: Browser(app) for name in pages}
    for name, browser in browsers.items():
        pages[name].append(seen(await browser.username(name), name))
        pages[name].append(seen(await browser.get("/login/password/"), name))
    for guess in range(4):  # interleaved, so both see the same load; under the platform's threshold (5)
        for name, browser in browsers.items():
            started = time.perf_counter()
            answer = await browser.password(f"wrong-{guess}")
            times[name].append(time.perf_counter() - started)
            pages[name].append(seen(answer, name))
    assert pages[ACCOUNT] == pages[NOBODY]
    assert 'data-outcome="invalid_credentials"' in pages[NOBODY][-1]["body"]

    # The same work: the password is hashed for nobody too (PBKDF2 is most of a cloud account's guess).
    account, nobody = statistics.median(times[ACCOUNT]), statistics.median(times[NOBODY])
    assert nobody > 0.6 * account, f"nobody answered in {nobody:.3f} s, the account in {account:.3f} s"

    # The same lockout: the threshold's guess locks both, and the right password no longer tells either.
    for name, browser in browsers.items():
        pages[name].append(seen(await browser.password("wrong-5"), name))
        pages[name].append(seen(await browser.password(PASSWORD if name == ACCOUNT else "R00t-pa55"), name))
    assert pages[ACCOUNT][-2:] == pages[NOBODY][-2:]
    assert 'data-outcome="cloud_locked"' in pages[NOBODY][-1]["body"]
    assert 'id="lock-ends"' in pages[NOBODY][-1]["body"] and 'id="lock-ends"' in pages[ACCOUNT][-1]["body"]
    # The operator still tells them apart: the record of a guess at nobody names no user.
    assert not await SignInEvent.objects.filter(username=NOBODY, user__isnull=False).aexists()
    assert await SignInEvent.objects.filter(username=ACCOUNT, user__isnull=False).aexists()
