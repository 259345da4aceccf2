from django.apps import AppConfig


class SamlIdpConfig(AppConfig):
    name = "samlidp"
    verbose_name = "SAML"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from samlidp import signals  # noqa: F401 - the portal's sign-out tells the session's SAML SPs
