"""Which URIs and origins an application may register, and how a confidential client's loopback redirect is
matched: the rules (applications/uris.py), the model, the admin console and `app_register`."""

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from applications.models import Application
from applications.services import application_register
from applications.uris import loopback_port_registered, origin_registered, redirect_uri_problem
from tests.fixtures.http import shown_form


@pytest.mark.parametrize("uri", ["https://wiki.contoso.test/cb", "http://localhost:8080/cb", "http://127.0.0.1/cb",
                                 "http://127.0.0.1:5000/callback", "http://[::1]:7000/cb"])
def test_https_and_loopback_http_may_be_registered(uri):
    assert redirect_uri_problem(uri) is None


@pytest.mark.parametrize("uri", ["http://wiki.contoso.test/cb", "http://10.0.0.5/cb", "HTTP://wiki.contoso.test/cb",
                                 "http://127.0.0.1.evil.test/cb", "http://localhost.evil.test/cb"])
def test_plain_http_off_loopback_may_not(uri):
    problem = redirect_uri_problem(uri)
    assert problem is not None and "loopback" in problem


def test_a_loopback_uri_must_name_a_registered_port():
    registered = ["http://127.0.0.1:9/callback", "http://[::1]:9/callback"]
    assert loopback_port_registered("http://127.0.0.1:9/callback", registered)
    assert loopback_port_registered("http://[::1]:9/callback", registered)
    assert not loopback_port_registered("http://127.0.0.1:4444/callback", registered)
    assert not loopback_port_registered("http://[::1]:4444/callback", registered)
    assert not loopback_port_registered("http://127.0.0.1/callback", registered)
    assert not loopback_port_registered("http://127.0.0.1:9/other", registered)


def test_origins_match_exactly():
    registered = "https://spa.contoso.test https://spa.contoso.test:8443"
    assert origin_registered("https://spa.contoso.test", registered)
    assert origin_registered("https://spa.contoso.test:8443", registered)
    for other in ("https://spa.contoso.test.evil.test", "http://spa.contoso.test", "https://evil.test", "",
                  "https://spa.contoso.test/", "null"):
        assert not origin_registered(other, registered), other


def _application(tenant, client_type, uris):
    return Application(tenant=tenant, name="App", client_type=client_type, redirect_uris=uris,
                       post_logout_redirect_uris=uris, authorization_grant_type=Application.GRANT_AUTHORIZATION_CODE,
                       algorithm=Application.RS256_ALGORITHM)


def test_a_confidential_client_gets_its_loopback_port_only_a_public_one_any(tenant_a):
    confidential = _application(tenant_a, Application.CLIENT_CONFIDENTIAL, "http://127.0.0.1:9/callback")
    public = _application(tenant_a, Application.CLIENT_PUBLIC, "http://127.0.0.1:9/callback")
    assert confidential.redirect_uri_allowed("http://127.0.0.1:9/callback")
    assert not confidential.redirect_uri_allowed("http://127.0.0.1:4444/callback")
    assert not confidential.post_logout_redirect_uri_allowed("http://127.0.0.1:4444/callback")
    assert public.redirect_uri_allowed("http://127.0.0.1:4444/callback")  # RFC 8252 §7.3: native apps


@pytest.mark.django_db
def test_the_model_refuses_plain_http_off_loopback_on_both_uri_fields(tenant_a):
    application = _application(tenant_a, Application.CLIENT_CONFIDENTIAL, "http://wiki.contoso.test/cb")
    with pytest.raises(ValidationError) as refused:
        application.full_clean()
    assert {"redirect_uris", "post_logout_redirect_uris"} <= set(refused.value.message_dict)
    assert "loopback" in " ".join(refused.value.message_dict["redirect_uris"])


@pytest.mark.django_db
def test_application_register_refuses_plain_http_and_keeps_exact_origins(tenant_a):
    with pytest.raises(ValidationError):
        application_register(tenant=tenant_a, name="Wiki", redirect_uris=["http://wiki.contoso.test/cb"])
    application, _ = application_register(tenant=tenant_a, name="SPA", redirect_uris=["https://spa.contoso.test/cb"],
                                          public=True, allowed_origins=["https://spa.contoso.test"])
    assert application.allowed_origins == "https://spa.contoso.test"
    with pytest.raises(ValidationError) as refused:  # DOT: origins are https (oauthlib sends CORS for https only)
        application_register(tenant=tenant_a, name="SPA 2", redirect_uris=["https://spa.contoso.test/cb"],
                             public=True, allowed_origins=["http://spa.contoso.test"])
    assert "allowed_origins" in refused.value.message_dict


@pytest.mark.django_db
def test_app_register_command_refuses_plain_http_and_takes_allowed_origins(tenant_a, capsys):
    with pytest.raises(CommandError, match="loopback"):
        call_command("app_register", "--tenant", tenant_a.slug, "--name", "Wiki",
                     "--redirect-uri", "http://wiki.contoso.test/callback")
    call_command("app_register", "--tenant", tenant_a.slug, "--name", "SPA", "--public",
                 "--redirect-uri", "https://spa.contoso.test/cb", "--allowed-origin", "https://spa.contoso.test",
                 "--allowed-origin", "https://spa2.contoso.test")
    assert Application.objects.get(name="SPA").allowed_origins.split() == [
        "https://spa.contoso.test", "https://spa2.contoso.test"]


@pytest.mark.django_db
def test_the_admin_console_refuses_plain_http_off_loopback(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    form = {"name": "Intranet", "client_type": Application.CLIENT_CONFIDENTIAL,
            "authorization_grant_type": Application.GRANT_AUTHORIZATION_CODE,
            "redirect_uris": "http://intranet.alpha.test/callback", "post_logout_redirect_uris": "",
            "allowed_origins": "", "algorithm": Application.RS256_ALGORITHM, "skip_authorization": "on"}
    response = client.post(reverse("admin:applications_application_add"),
                           {**form, **shown_form(client, reverse("admin:applications_application_add"))})
    assert response.status_code == 200
    assert "loopback" in " ".join(response.context["adminform"].form.errors["redirect_uris"])
    assert not Application.objects.filter(name="Intranet").exists()
