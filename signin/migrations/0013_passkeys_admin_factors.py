"""Tenant administrators made before passkeys get what tenant_admin_permissions() now gives new ones: their users'
second factors (passkeys, authenticator apps, recovery codes), to list and remove in the console."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

FACTOR_MODELS = (("signin", "passkeydevice"), ("otp_totp", "totpdevice"), ("otp_static", "staticdevice"))


def grant(apps, schema_editor):
    # Permissions are made after the last migration (post_migrate); these are needed now.
    for label in {app for app, _ in FACTOR_MODELS}:
        config = apps.get_app_config(label)
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model("tenant", "User")
    permissions = Permission.objects.none()
    for app, model in FACTOR_MODELS:
        permissions = permissions | Permission.objects.filter(content_type__app_label=app,
                                                              content_type__model=model)
    permissions = list(permissions)
    for admin in User.objects.filter(is_staff=True, is_superuser=False, tenant__isnull=False):
        admin.user_permissions.add(*permissions)


class Migration(migrations.Migration):

    dependencies = [
        ("signin", "0012_passkeys_devices"),
        ("otp_totp", "0003_add_timestamps"),
        ("otp_static", "0003_add_timestamps"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("tenant", "0010_passkeys_policy"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
