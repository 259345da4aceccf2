"""Django's createsuperuser, recorded in the audit trail: a platform administrator is the weightiest change there
is. The trail's app is listed before django.contrib.auth (config/settings/base.py), so this one is found first."""

from django.contrib.auth.management.commands import createsuperuser

from trail.commands import AuditedCommand


class Command(AuditedCommand, createsuperuser.Command):
    pass
