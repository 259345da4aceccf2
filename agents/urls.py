from django.urls import path

from agents import views

urlpatterns = [
    path("agent/register/", views.register, name="agent-register"),
]
