"""The two sign-in pages. Thin: parse the form, call the service, render the outcome."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import alogin, alogout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods

from agents.protocol import Outcome
from signin.forms import PasswordForm, UsernameForm
from signin.metrics import metrics_text
from signin.services.attempt import password_sign_in
from tenant.selectors import tenant_for_username

SESSION_KEY = "pta_signin"
BACKEND = "signin.backends.PassThroughBackend"


def safe_next(request: HttpRequest, candidate: str | None) -> str:
    """Only local destinations: anything else (another host, a scheme, //host) becomes the default."""
    if candidate and url_has_allowed_host_and_scheme(candidate, allowed_hosts={request.get_host()},
                                                     require_https=request.is_secure()):
        return candidate
    return settings.LOGIN_REDIRECT_URL


def _page(request: HttpRequest, template: str, context: dict, *, outcome: Outcome | None = None,
          status: int = 200) -> HttpResponse:
    response = render(request, template, {**context, "outcome": outcome}, status=status)
    if outcome is not None:
        response["PTA-Outcome"] = outcome.value
    return response


@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
def username_page(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.method == "GET":
        return _page(request, "signin/username.html", {"form": UsernameForm(), "next": next_url})
    form = UsernameForm(request.POST)
    if not form.is_valid():
        return _page(request, "signin/username.html", {"form": form, "next": next_url}, status=400)
    username = form.cleaned_data["username"]
    tenant = tenant_for_username(username=username.lower())
    if tenant is None or not tenant.pass_through_enabled:
        form.add_error("username", Outcome.UNKNOWN_DOMAIN.message)
        return _page(request, "signin/username.html", {"form": form, "next": next_url},
                     outcome=Outcome.UNKNOWN_DOMAIN)
    request.session[SESSION_KEY] = {"username": username, "organisation": tenant.name, "next": next_url}
    return HttpResponseRedirect("/login/password/")


@never_cache
@csrf_protect
@sensitive_post_parameters("password")
@sensitive_variables("password")
@require_http_methods(["GET", "POST"])
async def password_page(request: HttpRequest) -> HttpResponse:
    state = await request.session.aget(SESSION_KEY)
    if not state:
        return HttpResponseRedirect("/login/")
    context = {"username": state["username"], "organisation": state["organisation"], "next": state["next"]}
    if request.method == "GET":
        return _page(request, "signin/password.html", {**context, "form": PasswordForm()})
    form = PasswordForm(request.POST)
    if not form.is_valid():
        return _page(request, "signin/password.html", {**context, "form": form}, status=400,
                     outcome=Outcome.INVALID_CREDENTIALS)
    password = form.cleaned_data["password"]
    result = await password_sign_in(
        username=state["username"], password=password, ip=request.META.get("REMOTE_ADDR", ""),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
    )
    if not result.succeeded:
        return _page(request, "signin/password.html",
                     {**context, "form": PasswordForm(), "error": result.outcome.message}, outcome=result.outcome)
    await request.session.apop(SESSION_KEY)
    await alogin(request, result.user, backend=BACKEND)
    response = HttpResponseRedirect(state["next"])
    response["PTA-Outcome"] = Outcome.SUCCESS.value
    return response


@never_cache
async def done_page(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    if not user.is_authenticated:
        return HttpResponseRedirect("/login/")
    return _page(request, "signin/done.html", {"user": user}, outcome=Outcome.SUCCESS)


@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
async def logout_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        await alogout(request)
        return HttpResponseRedirect("/login/")
    return _page(request, "signin/logout.html", {})


async def metrics(request: HttpRequest) -> HttpResponse:
    return HttpResponse(metrics_text(), content_type="text/plain; version=0.0.4; charset=utf-8")
