from django.apps import AppConfig


class TenantConfig(AppConfig):
    name = "tenant"
    verbose_name = "Tenants"

    def ready(self) -> None:
        from tenant import signals  # noqa: F401 - connects the receivers that keep routing current
