"""Company branding: set by a tenant's administrator in the admin console, checked on upload (type by content,
size, pixels, colour contrast, plain text), served from the portal, and shown on the sign-in pages of that
tenant only once the username step knows it."""

from __future__ import annotations

import hashlib
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from branding.colours import contrast_with_white
from branding.images import MAX_LOGO_BYTES, MAX_LOGO_SIDE, logo_normalised
from branding.models import Branding
from branding.services import branding_set

ADD = "/admin/branding/branding/add/"


def png(width: int = 200, height: int = 50, colour=(11, 92, 173), *, noise: bool = False) -> bytes:
    image = Image.new("RGB", (width, height), colour)
    if noise:  # incompressible pixels, for a file past the byte limit
        image = Image.frombytes("RGB", (width, height), hashlib.shake_256(b"x").digest(width * height * 3))
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def upload(data: bytes, name: str = "logo.png", content_type: str = "image/png") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.fixture
def admin_a(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def form(**fields) -> dict:
    return {"accent_colour": "", "signin_text": "", **fields}


def errors(response) -> str:
    assert response.status_code == 200, response.status_code  # the form again, not a redirect
    adminform = response.context["adminform"]
    return " ".join(str(e) for field_errors in adminform.form.errors.values() for e in field_errors)


def test_a_tenant_administrator_uploads_a_logo_and_it_is_served_as_a_png_of_ours(admin_a, tenant_a):
    listing = admin_a.get("/admin/branding/branding/")
    assert listing.status_code == 302 and listing["Location"] == ADD  # none yet: straight to the form
    jpeg = io.BytesIO()
    Image.new("RGB", (1000, 400), (200, 30, 30)).save(jpeg, format="JPEG")
    response = admin_a.post(ADD, form(accent_colour="#0B5CAD", signin_text="Alpha staff only",
                                      logo_upload=upload(jpeg.getvalue(), "logo.jpg", "image/jpeg")))
    assert response.status_code == 302, errors(response)
    branding = Branding.objects.get(tenant=tenant_a)
    assert branding.accent_colour == "#0b5cad"
    stored = Image.open(io.BytesIO(bytes(branding.logo)))
    assert stored.format == "PNG"  # re-encoded, whatever came in
    assert stored.size == (branding.logo_width, branding.logo_height) == (300, 120)  # scaled into STORED_BOX
    assert branding.logo_sha256 == hashlib.sha256(bytes(branding.logo)).hexdigest()
    assert admin_a.get("/admin/branding/branding/")["Location"] == f"/admin/branding/branding/{branding.pk}/change/"

    served = admin_a.get(f"/branding/logo/{branding.logo_sha256}.png")
    assert served.status_code == 200
    assert served["Content-Type"] == "image/png"
    assert served["X-Content-Type-Options"] == "nosniff"
    assert served["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "sandbox" in served["Content-Security-Policy"]
    assert served.content == bytes(branding.logo)
    assert admin_a.get(f"/branding/logo/{'0' * 64}.png").status_code == 404
    assert admin_a.post(f"/branding/logo/{branding.logo_sha256}.png").status_code == 405


def test_a_transparent_png_keeps_its_transparency(admin_a, tenant_a):
    out = io.BytesIO()
    Image.new("RGBA", (100, 40), (0, 0, 0, 0)).save(out, format="PNG")
    assert admin_a.post(ADD, form(logo_upload=upload(out.getvalue()))).status_code == 302
    assert Image.open(io.BytesIO(bytes(Branding.objects.get(tenant=tenant_a).logo))).mode == "RGBA"


def test_a_logo_past_the_byte_limit_is_refused(admin_a, tenant_a):
    data = png(400, 400, noise=True)
    assert len(data) > MAX_LOGO_BYTES
    assert "at most 256 KB" in errors(admin_a.post(ADD, form(logo_upload=upload(data))))
    assert not Branding.objects.exists()


def test_a_logo_of_too_many_pixels_is_refused_before_it_is_decoded(admin_a):
    data = png(MAX_LOGO_SIDE + 1, 10)
    assert len(data) < MAX_LOGO_BYTES
    assert f"at most {MAX_LOGO_SIDE} × {MAX_LOGO_SIDE}" in errors(admin_a.post(ADD, form(logo_upload=upload(data))))
    # A decompression bomb: a tiny file that claims 30000 × 30000 pixels.
    bomb = io.BytesIO()
    Image.new("1", (30000, 30000)).save(bomb, format="PNG")
    assert len(bomb.getvalue()) < MAX_LOGO_BYTES
    message = errors(admin_a.post(ADD, form(logo_upload=upload(bomb.getvalue()))))
    assert "30000 × 30000 pixels" in message or "must be a PNG" in message
    assert not Branding.objects.exists()


@pytest.mark.parametrize("content", [
    b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.domain)</script></svg>',
    b"<!doctype html><html><script>alert(document.domain)</script></html>",
    # A PNG signature followed by HTML: a polyglot a sniffing browser might render.
    b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>",
    b"GIF89a" + b"\x00" * 40,
])
def test_anything_but_png_jpeg_or_webp_is_refused_whatever_its_name(admin_a, content):
    message = errors(admin_a.post(ADD, form(logo_upload=upload(content, "logo.png", "image/png"))))
    assert "must be a PNG, JPEG or WebP image" in message or "damaged or incomplete" in message
    assert not Branding.objects.exists()


def test_a_webp_is_accepted(admin_a, tenant_a):
    out = io.BytesIO()
    Image.new("RGB", (64, 64), (0, 80, 0)).save(out, format="WEBP")
    assert admin_a.post(ADD, form(logo_upload=upload(out.getvalue(), "l.webp", "image/webp"))).status_code == 302
    assert Branding.objects.get(tenant=tenant_a).logo_width == 64


@pytest.mark.parametrize("colour,message", [
    ("#ffff00", "too light"),  # yellow: 1.1:1 with white
    ("#77aaff", "too light"),
    ("red", "six hexadecimal digits"),
    ("#0b5cad;}body{display:none", "at most 7 characters"),  # CSS injection
    ("#0b5cad;", "at most 7 characters"),
    ("#0b5cag", "six hexadecimal digits"),
])
def test_a_colour_that_is_not_readable_or_not_a_colour_is_refused(admin_a, colour, message):
    assert message in errors(admin_a.post(ADD, form(accent_colour=colour)))
    assert not Branding.objects.exists()


def test_contrast_is_wcag_s_ratio():
    assert contrast_with_white("#000000") == pytest.approx(21)
    assert contrast_with_white("#ffffff") == pytest.approx(1)
    assert contrast_with_white("#0b5cad") > 4.5 > contrast_with_white("#3d8bfd")


def test_the_sign_in_text_is_length_limited(admin_a):
    assert "at most 500 characters" in errors(admin_a.post(ADD, form(signin_text="x" * 501)))


def sign_in_pages(client, upn: str) -> tuple[str, str]:
    """The username page, then the password page after the username step, as a browser gets them."""
    username_page = client.get("/login/").content.decode()
    token = client.cookies["csrftoken"].value
    assert client.post("/login/", {"username": upn, "csrfmiddlewaretoken": token}).status_code == 302
    return username_page, client.get("/login/password/").content.decode()


# The password page is an async view whose page is drawn in a worker thread, on a connection of its own: it sees
# only committed rows.
@pytest.mark.django_db(transaction=True)
def test_the_password_page_shows_the_tenant_s_branding_escaped_and_the_username_page_does_not(
        client, tenant_a, tenant_b):
    logo = branding_set(tenant=tenant_a, accent_colour="#5a2d82",
                        signin_text='<script>alert("x")</script>\nSecond line',
                        logo=logo_normalised(png()))
    client.get("/login/")  # the CSRF cookie
    username_page, password_page = sign_in_pages(client, "someone@alpha.example.test")
    assert 'id="brand-text"' not in username_page and "--accent: #5a2d82" not in username_page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;<br>Second line" in password_page
    assert "<script>alert" not in password_page
    assert ":root { --accent: #5a2d82; }" in password_page
    assert f'src="/branding/logo/{logo.logo_sha256}.png" width="200" height="50" alt="Alpha Corp"' in password_page

    # Another tenant's sign-in in the same browser: its own look (none set), not Alpha's.
    again_username, other = sign_in_pages(client, "someone@beta.example.test")
    assert "brand-text" not in again_username  # a sign-in begun before does not brand the next username page
    assert "brand-text" not in other and "#5a2d82" not in other
    # A domain no tenant has: the portal's look.
    _, unknown = sign_in_pages(client, "someone@nobody.example.test")
    assert 'class="brand"' not in unknown


@pytest.mark.django_db(transaction=True)
def test_branding_with_nothing_set_is_the_portal_s_look(client, tenant_a):
    branding_set(tenant=tenant_a)
    client.get("/login/")
    _, page = sign_in_pages(client, "someone@alpha.example.test")
    assert 'class="brand"' not in page


def test_another_tenant_s_administrator_cannot_see_or_edit_it(client, tenant_a, tenant_b, tenant_admin_factory):
    theirs = branding_set(tenant=tenant_b, accent_colour="#003366", signin_text="Beta only")
    client.force_login(tenant_admin_factory(tenant_a))
    assert client.get("/admin/branding/branding/")["Location"] == ADD  # Alpha has none: its own add form
    for url in (f"/admin/branding/branding/{theirs.pk}/change/", f"/admin/branding/branding/{theirs.pk}/delete/",
                f"/admin/branding/branding/{theirs.pk}/history/"):
        assert client.get(url).status_code == 404
    response = client.post(f"/admin/branding/branding/{theirs.pk}/change/",
                           form(accent_colour="#000000", signin_text="taken over"))
    assert response.status_code == 404
    # Nor through the add form: the tenant is the administrator's own, whatever the POST says.
    assert client.post(ADD, form(tenant=str(tenant_b.pk), signin_text="mine")).status_code == 302
    theirs.refresh_from_db()
    assert (theirs.accent_colour, theirs.signin_text) == ("#003366", "Beta only")
    assert Branding.objects.get(tenant=tenant_a).signin_text == "mine"
    # One branding per tenant: no second add form.
    assert client.get(ADD).status_code == 403


def test_a_platform_administrator_edits_any_tenant_s(client, tenant_a, tenant_b):
    from tenant.models import User

    root = User.objects.create_superuser("root@platform.test", "R00t-pa55-for-tests")
    client.force_login(root)
    assert client.post(ADD, form(tenant=str(tenant_b.pk), accent_colour="#1e4620")).status_code == 302
    assert client.get("/admin/branding/branding/").status_code == 200  # the list of every tenant's
    # A second for the same tenant is a form error, not the database's.
    assert "already" in errors(client.post(ADD, form(tenant=str(tenant_b.pk))))


def test_removing_the_logo(admin_a, tenant_a):
    branding = branding_set(tenant=tenant_a, logo=logo_normalised(png()))
    url = f"/admin/branding/branding/{branding.pk}/change/"
    assert 'alt="Current logo"' in admin_a.get(url).content.decode()
    assert admin_a.post(url, form(remove_logo="on")).status_code == 302
    branding.refresh_from_db()
    assert (bytes(branding.logo), branding.logo_sha256) == (b"", "")


@pytest.mark.django_db(transaction=True)
def test_the_signed_in_page_shows_the_user_s_tenant_s_branding(client, tenant_a):
    from tenant.models import User

    branding_set(tenant=tenant_a, signin_text="Welcome to Alpha")
    client.force_login(User.objects.create_user("u@alpha.example.test", tenant=tenant_a))
    assert "Welcome to Alpha" in client.get("/login/done/").content.decode()


def test_the_second_factor_s_pages_show_the_user_s_tenant_s_branding(client, tenant_a):
    import time

    from signin.views import MFA_SESSION_KEY
    from tenant.models import User

    branding_set(tenant=tenant_a, signin_text="Alpha's second factor")
    user = User.objects.create_user("mfa@alpha.example.test", tenant=tenant_a)
    session = client.session
    session[MFA_SESSION_KEY] = {"user_id": user.pk, "tenant_id": str(tenant_a.pk), "event_id": 0,
                                "next": "/login/done/", "channel": "web", "started": time.time(), "failures": 0}
    session.save()
    page = client.get("/login/mfa/enrol/")  # no authenticator yet: its set-up page
    assert page.status_code == 200 and "Alpha&#x27;s second factor" in page.content.decode()


# --- the hot path: what the password page reads -----------------------------------------------------------

@pytest.fixture
def routes_kept(settings, tmp_path):
    """This process remembers routes and brandings, as a portal node does (the embedded profile's way: the stamp
    file; production's channel is the same routes_changed(): tests/integration/test_routing.py)."""
    from tenant.routing import routes

    settings.STATE_DIR, settings.PTA_REDIS_URL = tmp_path, ""
    routes.stamp_follow(tmp_path / "routing.stamp")
    routes.keep(True)
    yield tmp_path / "routing.stamp"
    routes.keep(False)
    routes.stamp_follow(None)


def password_page_drawn(client) -> str:
    """The password page as its view draws it (signin.views.password_form), here in the test's thread, for the
    session the client's browser holds: the queries it makes are the test's to count (the served page draws it in
    a worker thread, on a connection of its own)."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth.models import AnonymousUser
    from django.test import RequestFactory

    from signin.views import password_form

    request = RequestFactory().get("/login/password/")
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(
        client.cookies[settings.SESSION_COOKIE_NAME].value)
    request.user = AnonymousUser()
    response = password_form(request)
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db(transaction=True)
def test_the_password_page_reads_nothing_and_an_edit_shows_at_once(client, tenant_a, routes_kept,
                                                                     django_assert_num_queries):
    from tenant.routing import _stamp_state

    client.get("/login/")
    sign_in_pages(client, "someone@alpha.example.test")  # a node that has served Alpha's page once
    # The tenant comes from the session (the username step's), its branding (none) from what the node remembers:
    # no query, as before there was branding.
    with django_assert_num_queries(0):
        page = password_page_drawn(client)
    assert 'class="brand"' not in page
    # An edit shows at once, on this node (its signal) and on the others (the stamp file, or production's channel).
    stamp = _stamp_state(routes_kept)
    branding_set(tenant=tenant_a, accent_colour="#5a2d82", signin_text="Now branded")
    assert _stamp_state(routes_kept) != stamp
    assert "Now branded" in password_page_drawn(client)
    assert "Now branded" in client.get("/login/password/").content.decode()
    with django_assert_num_queries(0):
        assert "--accent: #5a2d82" in password_page_drawn(client)
    Branding.objects.get(tenant=tenant_a).delete()
    assert "Now branded" not in client.get("/login/password/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_an_abandoned_sign_in_does_not_brand_the_front_page_or_the_help_page(client, tenant_a):
    branding_set(tenant=tenant_a, accent_colour="#5a2d82", signin_text="Alpha only")
    client.get("/login/")
    _, password = sign_in_pages(client, "someone@alpha.example.test")
    assert "Alpha only" in password
    for path in ("/", "/login/help/", "/login/"):  # the sign-in left at its password page
        page = client.get(path).content.decode()
        assert "Alpha only" not in page and "#5a2d82" not in page, path


def test_a_platform_administrator_cannot_move_a_branding_to_another_tenant(client, tenant_a, tenant_b):
    from tenant.models import User

    branding = branding_set(tenant=tenant_a, signin_text="Alpha's", logo=logo_normalised(png()))
    client.force_login(User.objects.create_superuser("root@platform.test", "R00t-pa55-for-tests"))
    url = f"/admin/branding/branding/{branding.pk}/change/"
    assert "tenant" not in client.get(url).context["adminform"].form.fields  # shown, not editable
    assert client.post(url, form(tenant=str(tenant_b.pk), signin_text="Alpha's still")).status_code == 302
    assert Branding.objects.count() == 1
    branding.refresh_from_db()
    assert branding.tenant == tenant_a and branding.signin_text == "Alpha's still" and branding.logo_sha256
