from django.apps import AppConfig


class SamlIdpConfig(AppConfig):
    name = "samlidp"
    verbose_name = "SAML"
    default_auto_field = "django.db.models.BigAutoField"
