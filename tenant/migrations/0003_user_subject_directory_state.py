import uuid

from django.db import migrations, models


def give_every_user_a_subject(apps, schema_editor):
    User = apps.get_model("tenant", "User")
    for user in User.objects.filter(subject__isnull=True).only("pk"):
        User.objects.filter(pk=user.pk).update(subject=uuid.uuid4())


class Migration(migrations.Migration):

    dependencies = [
        ("tenant", "0002_domain_verification"),
    ]

    operations = [
        migrations.AddField(
            model_name="user",
            name="subject",
            field=models.UUIDField(editable=False, null=True),
        ),
        migrations.RunPython(give_every_user_a_subject, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="user",
            name="subject",
            field=models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
        ),
        migrations.AddField(
            model_name="user",
            name="directory_state",
            field=models.CharField(blank=True, default="", editable=False, max_length=32),
        ),
    ]
