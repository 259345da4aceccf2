"""The admin console's site: every page of every model admin (forms, actions, the pages of their own: verify a
domain, rotate a secret, change a password) runs with its administrator as the trail's actor.

``AdminSite.admin_view`` wraps each of those views (``ModelAdmin.get_urls`` and every admin's own ``get_urls``
go through it), so a page added later is covered without knowing of the trail. The actor is set after the
site's own check that the user may use the console.
"""

from __future__ import annotations

import functools

from django.contrib.admin import AdminSite

from signin.services.client import client_address
from trail.context import Actor, Through, actor_set


def console_actor(request) -> Actor:
    detail = f"{request.method} {request.path}"[:400]
    if request.method == "POST" and request.POST.get("action"):
        detail += f" action={request.POST['action'][:60]}"
    return Actor(name=request.user.get_username(), through=Through.CONSOLE, user_id=request.user.pk,
                 address=client_address(request.META), detail=detail)


class ConsoleSite(AdminSite):
    def admin_view(self, view, cacheable=False):
        @functools.wraps(view)
        def audited(request, *args, **kwargs):
            with actor_set(console_actor(request)):
                return view(request, *args, **kwargs)

        return super().admin_view(audited, cacheable)
