"""What an application may be: the password grant for confidential clients only, ID tokens signed with RS256
only (what discovery says), whichever way the application is registered."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from applications.models import Application
from applications.services import application_register


def test_app_register_refuses_a_public_password_client(tenant_a):
    with pytest.raises(CommandError, match="confidential"):
        call_command("app_register", "--tenant", tenant_a.slug, "--name", "Legacy", "--grant", "password",
                     "--public")
    assert not Application.objects.filter(name="Legacy").exists()


def test_a_confidential_password_client_is_registered(tenant_a):
    application, secret = application_register(tenant=tenant_a, name="Legacy", grant="password")
    assert application.client_type == Application.CLIENT_CONFIDENTIAL and secret


@pytest.mark.parametrize("algorithm", [Application.HS256_ALGORITHM, Application.NO_ALGORITHM])
def test_id_tokens_are_signed_with_rs256_only(tenant_a, algorithm):
    application = Application(tenant=tenant_a, name="Wiki", client_type=Application.CLIENT_CONFIDENTIAL,
                              authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
                              redirect_uris="https://wiki.alpha.example.test/cb", algorithm=algorithm)
    with pytest.raises(ValidationError) as refused:
        application.full_clean()
    assert "algorithm" in refused.value.message_dict
