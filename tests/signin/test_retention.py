import datetime

from django.test import override_settings
from django.utils import timezone

from agents.models import RegistrationToken
from agents.services.registration import registration_token_issue
from agents.tasks import purge_registration_tokens
from signin.models import SignInEvent
from signin.tasks import purge_signin_events


@override_settings(PTA_SIGNIN_RETENTION_DAYS=30)
def test_old_sign_in_records_are_purged_and_recent_ones_kept(tenant_a):
    old = SignInEvent.objects.create(tenant=tenant_a, username="old@alpha.example.test", outcome="success",
                                     created_at=timezone.now() - datetime.timedelta(days=31))
    recent = SignInEvent.objects.create(tenant=tenant_a, username="new@alpha.example.test", outcome="success",
                                        created_at=timezone.now() - datetime.timedelta(days=29))
    assert purge_signin_events.apply().get() == 1
    assert not SignInEvent.objects.filter(pk=old.pk).exists()
    assert SignInEvent.objects.filter(pk=recent.pk).exists()


def test_used_or_long_expired_tokens_are_purged(tenant_a):
    long_ago = timezone.now() - datetime.timedelta(days=8)
    expired, _ = registration_token_issue(tenant=tenant_a)
    used, _ = registration_token_issue(tenant=tenant_a)
    live, _ = registration_token_issue(tenant=tenant_a)
    RegistrationToken.objects.filter(pk=expired.pk).update(expires_at=long_ago)
    RegistrationToken.objects.filter(pk=used.pk).update(used_at=long_ago)
    assert purge_registration_tokens.apply().get() == 2
    assert list(RegistrationToken.objects.all()) == [live]
