"""Where the console leads: its home page links to the agent health page, its "View site" link goes there too
(named for it). The portal's root, a page leading to the sign-in: tests/signin/test_guidance.py."""

import re

import pytest
from django.urls import reverse


@pytest.fixture
def admin_client(client, tenant_a, tenant_admin_factory):
    client.force_login(tenant_admin_factory(tenant_a))
    return client


def test_the_console_home_links_to_agent_health(admin_client):
    html = admin_client.get(reverse("admin:index")).content.decode()
    health = reverse("agent-health-page")
    assert re.search(rf'<th scope="row"><a href="{re.escape(health)}">Agent health</a></th>', html)
    user_tools = re.search(r'<div id="user-tools">(.*?)</div>', html, re.S)
    assert user_tools and f'<a href="{health}">Agent health</a>' in user_tools.group(1)
    assert "View site" not in html
    page = admin_client.get(health)
    assert page.status_code == 200 and "<h1>Agent health</h1>" in page.content.decode()


def test_a_staff_user_without_the_agents_right_gets_no_health_link(client, tenant_a):
    from tenant.models import User

    staff = User.objects.create_user("helper@alpha.example.test", tenant=tenant_a, is_staff=True)
    client.force_login(staff)
    html = client.get(reverse("admin:index")).content.decode()
    assert reverse("agent-health-page") not in html
