import json
import secrets

from tenant.models import Tenant, User
from tenant.services import tenant_admin_create, tenant_create
from trail.commands import AuditedCommand


class Command(AuditedCommand):
    help = "Create (once) the demo tenant and its cloud administrator; prints their facts as JSON on the last line."

    def add_arguments(self, parser):
        parser.add_argument("--domain", default="corp.example.test")
        parser.add_argument("--name", default="Contoso (demo)")
        parser.add_argument("--slug", default="demo")

    def handle(self, *args, domain, name, slug, **options):
        tenant = Tenant.objects.filter(slug=slug).first() or tenant_create(name=name, domains=[domain], slug=slug)
        admin_upn = f"cloudadmin@{domain}"
        password = secrets.token_urlsafe(12)
        admin = User.objects.filter(upn=admin_upn).first()
        if admin is None:
            tenant_admin_create(tenant=tenant, upn=admin_upn, display_name="Demo cloud administrator",
                                password=password)
        else:
            admin.set_password(password)  # a fresh password each demo start, printed below
            admin.save(update_fields=["password"])
        self.stdout.write(json.dumps({"tenant": tenant.slug, "domain": domain, "admin_upn": admin_upn,
                                      "admin_password": password}))
