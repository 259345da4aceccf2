"""Applications registered before the portal kept client secrets hashed only (``hash_client_secret=False``, DOT's
option) keep their secret, now hashed: the model refuses a secret in clear, so their change page could not be
saved. The application goes on signing in with the secret it has (the token endpoint checks it against the
hash); an administrator who wants a new one rotates it."""

from django.contrib.auth.hashers import identify_hasher, make_password
from django.db import migrations


def hashed(secret: str) -> str:
    try:
        identify_hasher(secret)
    except ValueError:
        return make_password(secret)
    return secret  # already a hash (DOT leaves one as it is)


def hash_clear_client_secrets(apps, schema_editor):
    Application = apps.get_model("applications", "Application")
    for pk, secret in Application.objects.filter(hash_client_secret=False).values_list("pk", "client_secret"):
        Application.objects.filter(pk=pk).update(client_secret=hashed(secret) if secret else secret,
                                                 hash_client_secret=True)


class Migration(migrations.Migration):

    dependencies = [
        ("applications", "0004_groups_claim"),
    ]

    operations = [
        migrations.RunPython(hash_clear_client_secrets, migrations.RunPython.noop, elidable=True),
    ]
