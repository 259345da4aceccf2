from django.apps import AppConfig


class SigninConfig(AppConfig):
    name = "signin"
    verbose_name = "Sign-in"

    def ready(self) -> None:
        from django.contrib.auth.models import update_last_login
        from django.contrib.auth.signals import user_logged_in

        from signin import checks  # noqa: F401 -- registers the OpenID hooks' start-up check

        # An UPDATE of last_login on every sign-in would sit on the hot path; the sign-in record keeps it.
        user_logged_in.disconnect(update_last_login, dispatch_uid="update_last_login")
