from django.urls import path

from signin import security_views, views

app_name = "signin"
urlpatterns = [
    path("", views.home_page, name="home"),
    path("favicon.ico", views.favicon, name="favicon"),
    path("login/help/", views.help_page, name="help"),
    path("login/", views.username_page, name="username"),
    path("login/password/", views.password_page, name="password"),
    path("login/password/seal/", views.seal_ticket_page, name="password-seal"),
    path("login/password/change/", views.password_change_page, name="password-change"),
    path("login/mfa/", views.mfa_page, name="mfa"),
    path("login/mfa/enrol/", views.mfa_enrol_page, name="mfa-enrol"),
    path("login/mfa/passkey/", views.mfa_passkey_page, name="mfa-passkey"),
    path("login/mfa/enrol/passkey/", views.mfa_enrol_passkey_page, name="mfa-enrol-passkey"),
    path("login/done/", views.done_page, name="done"),
    path("login/security/", security_views.security_page, name="security"),
    path("login/security/verify/passkey/", security_views.security_verify_passkey, name="security-verify-passkey"),
    path("login/security/passkeys/add/", security_views.security_passkey_add, name="security-passkey-add"),
    path("login/security/passkeys/<int:device_id>/<str:action>/", security_views.security_passkey_change,
         name="security-passkey-change"),
    path("logout/", views.LogoutView.as_view(), name="logout"),
    path("metrics", views.metrics, name="metrics"),
]
