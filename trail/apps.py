from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class TrailConfig(AppConfig):
    name = "trail"
    verbose_name = "Audit trail"
    default = True

    def ready(self) -> None:
        from trail.recording import receivers_connect

        # The apps below know nothing of the trail: their models' changes are followed from here.
        receivers_connect()


class ConsoleAdminConfig(admin_apps.AdminConfig):
    """Django's admin app, with the console's site (trail/console.py) as ``admin.site``. Named in INSTALLED_APPS
    in place of "django.contrib.admin"."""

    default = False
    default_site = "trail.console.ConsoleSite"
