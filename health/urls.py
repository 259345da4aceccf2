from django.contrib import admin
from django.urls import path

from health import views

# The page keeps the address it had among the agents' admin pages; admin_view asks for a staff sign-in first.
urlpatterns = [
    path("admin/agents/agent/health/", admin.site.admin_view(views.health_page), name="agent-health-page"),
    path("api/agents/health/", views.health, name="agent-health"),
    path("healthz", views.healthz, name="healthz"),
    path("alerts/confirm/<str:token>/", views.alert_email_confirm, name="alert-email-confirm"),
]
