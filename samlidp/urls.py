from django.urls import path

from samlidp import views

app_name = "samlidp"

urlpatterns = [
    path("saml/<slug:slug>/metadata/", views.metadata, name="metadata"),
    path("saml/<slug:slug>/sso/", views.sso, name="sso"),
    path("saml/<slug:slug>/sso/continue/", views.sso_continue, name="sso-continue"),
    path("saml/<slug:slug>/slo/", views.slo, name="slo"),
    path("saml/<slug:slug>/slo/notice/<str:notice>/", views.slo_notice, name="slo-notice"),
]
