from django.apps import AppConfig


class BrandingConfig(AppConfig):
    name = "branding"
    verbose_name = "Company branding"

    def ready(self) -> None:
        from branding import signals  # noqa: F401 - registers the receivers
