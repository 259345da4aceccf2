"""The admin console names things in plain words: no raw model names ("sign in events", "Otp_Totp", "static
devices") and no acronyms in lower case ("Mfa policy", "Ip address")."""

import re

import pytest
from django.contrib import admin
from django.db.models import Field
from django.urls import reverse

from tenant.models import User

OUR_APPS = {"tenant", "agents", "signin", "health", "applications", "otp_totp", "otp_static"}
# Words that are acronyms or names: written in lower case, a label was made from a field's name.
LOWER_ACRONYMS = re.compile(r"\b(mfa|ip|id|upn|ad|pem|url|uri|totp|otp)\b")


@pytest.fixture
def platform_client(client, db):
    client.force_login(User.objects.create_superuser("root@platform.test", "R00t-pa55-for-tests"))
    return client


def test_the_index_names_each_section_and_model_in_plain_words(platform_client):
    html = platform_client.get(reverse("admin:index")).content.decode()
    for plain in ("Sign-in records", "Registration tokens", "Agents", "Tenants", "Domains", "Users",
                  "MFA authenticator apps", "Authenticator apps", "MFA recovery codes", "Recovery codes",
                  "Alert settings", "Incidents"):
        assert f">{plain}<" in html, plain
    for raw in ("Sign in events", "Otp_Totp", "Otp_Static", "TOTP devices", "Static devices"):
        assert raw not in html, raw


def test_no_label_of_our_models_keeps_an_acronym_in_lower_case():
    found = []
    for model in admin.site._registry:
        opts = model._meta
        if opts.app_label not in OUR_APPS:
            continue
        names = [str(opts.verbose_name), str(opts.verbose_name_plural), str(opts.app_config.verbose_name)]
        names += [str(f.verbose_name) for f in opts.get_fields() if isinstance(f, Field)
                  and (opts.app_label not in ("otp_totp", "otp_static", "applications"))]
        found += [f"{opts.label}: {name}" for name in names if LOWER_ACRONYMS.search(name) or "_" in name]
    assert found == []


def test_the_pages_show_the_plain_labels(platform_client, tenant_a):
    tenant_page = platform_client.get(reverse("admin:tenant_tenant_change", args=[tenant_a.pk])).content.decode()
    assert "MFA policy" in tenant_page and "Pass-through enabled" in tenant_page
    from signin.models import SignInEvent

    SignInEvent.objects.create(tenant=tenant_a, username="ada@alpha.example.test", outcome="success",
                               ip_address="192.0.2.7")
    records = platform_client.get(reverse("admin:signin_signinevent_changelist")).content.decode()
    assert "Select sign-in record to view" in records and "1 sign-in record" in records
    assert "IP address" in records and "MFA decision" in records
    factors = platform_client.get(reverse("admin:otp_totp_totpdevice_changelist")).content.decode()
    assert "authenticator app" in factors.lower() and "TOTP device" not in factors
