from django.urls import re_path

from branding import views

urlpatterns = [
    re_path(r"^branding/logo/(?P<sha256>[0-9a-f]{64})\.png$", views.logo, name="branding-logo"),
]
