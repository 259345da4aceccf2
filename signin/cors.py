"""CORS on /token/ and /userinfo/ for browser-only clients: ``Access-Control-Allow-Origin`` names the caller's
origin only when the application concerned registered it exactly (``app_register --allowed-origin``); the
application is the client of /token/ (client_id in the body or HTTP Basic) and the access token's at
/userinfo/. A preflight names no client: it passes for an origin some application registered, and the answer
itself is then checked as above. Discovery and the JWKS are public: DOT sends ``*`` on both."""

from __future__ import annotations

import base64
import binascii
import json
from urllib.parse import unquote

from django.http import HttpRequest, HttpResponse
from django.utils.cache import patch_vary_headers
from oauth2_provider.views import TokenView, UserInfoView

from applications.models import Application
from applications.selectors import (
    application_by_client_id,
    application_of_access_token,
    origin_registered_by_any_application,
)
from applications.uris import origin_registered

PREFLIGHT_MAX_AGE_SECONDS = 600


def _preflight(request: HttpRequest, methods: str) -> HttpResponse:
    response = HttpResponse(status=204)
    origin = request.headers.get("Origin", "")
    if origin_registered_by_any_application(origin=origin):
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = methods
        response["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
        response["Access-Control-Max-Age"] = str(PREFLIGHT_MAX_AGE_SECONDS)
    patch_vary_headers(response, ["Origin"])
    return response


def _allow_origin(request: HttpRequest, response: HttpResponse, application: Application | None) -> HttpResponse:
    # oauthlib adds its own header on a successful exchange (scheme and host compared): one rule here instead.
    if "Access-Control-Allow-Origin" in response:
        del response["Access-Control-Allow-Origin"]
    origin = request.headers.get("Origin", "")
    if origin and application is not None and origin_registered(origin, application.allowed_origins):
        response["Access-Control-Allow-Origin"] = origin
    patch_vary_headers(response, ["Origin"])
    return response


def _client_id(request: HttpRequest) -> str:
    """The client of a token request: HTTP Basic (RFC 6749 §2.3.1, form-encoded) or ``client_id`` in the body."""
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            return unquote(base64.b64decode(credentials.strip(), validate=True).decode().partition(":")[0])
        except (binascii.Error, UnicodeDecodeError):
            return ""
    return request.POST.get("client_id", "")


def _bearer(request: HttpRequest) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


class TokenEndpoint(TokenView):
    def options(self, request, *args, **kwargs):
        return _preflight(request, "POST, OPTIONS")

    def post(self, request, *args, **kwargs):
        if request.POST.get("grant_type") == "urn:ietf:params:oauth:grant-type:device_code":
            # The device flow is not offered (its endpoints are not mounted); DOT would fail on a missing code.
            response = HttpResponse(json.dumps({"error": "unsupported_grant_type"}), status=400,
                                    content_type="application/json")
        else:
            response = super().post(request, *args, **kwargs)
        if not request.headers.get("Origin"):
            return response
        return _allow_origin(request, response, application_by_client_id(client_id=_client_id(request)))


class UserInfoEndpoint(UserInfoView):
    def options(self, request, *args, **kwargs):
        return _preflight(request, "GET, POST, OPTIONS")

    def get(self, request, *args, **kwargs):
        return self._with_origin(request, super().get(request, *args, **kwargs))

    def post(self, request, *args, **kwargs):
        return self._with_origin(request, super().post(request, *args, **kwargs))

    @staticmethod
    def _with_origin(request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if not request.headers.get("Origin"):
            return response
        return _allow_origin(request, response, application_of_access_token(token=_bearer(request)))
