import django.db.models.deletion
from django.db import migrations, models
from oauth2_provider.settings import oauth2_settings


class Migration(migrations.Migration):

    dependencies = [
        ("oauth2_provider", "0004_auto_20200902_2022"),  # the IDToken model
        ("signin", "0002_outcome_identity_conflict"),
    ]

    operations = [
        migrations.CreateModel(
            name="IdTokenAuthTime",
            fields=[
                ("id_token", models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True,
                                                  related_name="+", serialize=False,
                                                  to=oauth2_settings.ID_TOKEN_MODEL)),
                ("auth_time", models.DateTimeField()),
            ],
        ),
    ]
