"""Django's changepassword, recorded in the audit trail (that the password was set, never what it is)."""

from django.contrib.auth.management.commands import changepassword

from trail.commands import AuditedCommand


class Command(AuditedCommand, changepassword.Command):
    pass
