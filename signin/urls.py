from django.urls import path

from signin import views

app_name = "signin"
urlpatterns = [
    path("login/", views.username_page, name="username"),
    path("login/password/", views.password_page, name="password"),
    path("login/done/", views.done_page, name="done"),
    path("logout/", views.logout_page, name="logout"),
    path("metrics", views.metrics, name="metrics"),
]
