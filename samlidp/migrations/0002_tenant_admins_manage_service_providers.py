"""Tenant administrators created before this app get what tenant_admin_permissions() now gives new ones: their
tenant's SAML service providers in the admin console."""

from django.contrib.auth.management import create_permissions
from django.contrib.contenttypes.management import create_contenttypes
from django.db import migrations


def grant(apps, schema_editor):
    config = apps.get_app_config("samlidp")
    config.models_module = True  # the historical app config has none; the two helpers skip such apps
    create_contenttypes(config, verbosity=0, apps=apps)
    create_permissions(config, verbosity=0, apps=apps)
    Permission = apps.get_model("auth", "Permission")
    User = apps.get_model("tenant", "User")
    permissions = list(Permission.objects.filter(content_type__app_label="samlidp",
                                                 content_type__model="serviceprovider"))
    for user in User.objects.filter(tenant__isnull=False, is_staff=True):
        user.user_permissions.add(*permissions)


class Migration(migrations.Migration):

    dependencies = [
        ("samlidp", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
