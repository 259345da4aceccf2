from asgiref.sync import async_to_sync
from django.contrib.auth.backends import ModelBackend
from django.views.decorators.debug import sensitive_variables

from signin.services.attempt import password_sign_in
from signin.services.client import client_address
from tenant.models import User


def _client(request) -> tuple[str, str]:
    if request is None:
        return "", ""
    return client_address(request.META), request.META.get("HTTP_USER_AGENT", "")


class PassThroughBackend:
    """Django's authentication backend over the pass-through sign-in: the admin console's login and the OAuth
    endpoints use it, so tenant administrators sign in through their own AD. The outcome is left on the
    request as ``request.pta_signin`` for callers that show it."""

    channel = "backend"

    @sensitive_variables("password")
    async def aauthenticate(self, request, username: str | None = None, password: str | None = None, **kwargs):
        if not username or password is None:
            return None
        ip, user_agent = _client(request)
        result = await password_sign_in(username=username, password=password, ip=ip, user_agent=user_agent,
                                        channel=getattr(request, "pta_channel", self.channel))
        if request is not None:
            request.pta_signin = result
        return result.user if result.succeeded else None

    @sensitive_variables("password")
    def authenticate(self, request, username: str | None = None, password: str | None = None, **kwargs):
        return async_to_sync(self.aauthenticate)(request, username=username, password=password, **kwargs)

    def get_user(self, user_id):
        user = User.objects.filter(pk=user_id).first()
        return user if user and user.is_active else None

    async def aget_user(self, user_id):
        user = await User.objects.filter(pk=user_id).afirst()
        return user if user and user.is_active else None


class PermissionsBackend(ModelBackend):
    """Django's permission checks for the admin console, without a second password check: every password,
    cloud-only accounts' included, goes through PassThroughBackend and is recorded there."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        return None

    async def aauthenticate(self, request, username=None, password=None, **kwargs):
        return None
