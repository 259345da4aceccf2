"""The agent health page (in the admin console), its data as JSON, /healthz for load balancers, and the page
that confirms an alert e-mail address."""

from asgiref.sync import async_to_sync
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, JsonResponse
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.http import require_http_methods, require_safe

from agents.models import Agent
from health.charts import (
    chart_styles,
    latency_chart,
    latency_legend,
    outcome_totals,
    signins_chart,
    signins_legend,
)
from health.selectors import (
    DEFAULT_HISTORY_HOURS,
    HISTORY_HOURS,
    agents_health,
    health_tenants,
    readiness_failures,
)
from health.services.alert_recipients import alert_recipient_by_token, alert_recipient_confirm

# How often the open page asks for its live part again: well within an agent's presence expiry, so a lost
# agent shows within that time.
REFRESH_SECONDS = 5


def _hours(request: HttpRequest) -> int:
    hours = request.GET.get("hours", "")
    return int(hours) if hours.isdigit() and int(hours) in HISTORY_HOURS else DEFAULT_HISTORY_HOURS


async def health(request: HttpRequest) -> JsonResponse:
    """GET /api/agents/health/: the agents of the signed-in administrator's tenant (every tenant, or
    ?tenant=SLUG, for a platform administrator), and the history of the last ?hours= (3 by default)."""
    user = await request.auser()
    if not user.is_authenticated:
        return JsonResponse({"error": "unauthenticated", "message": "Sign in as a tenant administrator."}, status=401)
    # As for the page: staff status alone (which a tenant administrator may give any of their users) is not the
    # right to see the agents.
    if not (user.is_staff and await user.ahas_perm("agents.view_agent")):
        return JsonResponse({"error": "forbidden", "message": "Tenant administrators only."}, status=403)
    tenants = await health_tenants(user=user, slug=request.GET.get("tenant", ""))
    return JsonResponse(await agents_health(tenants=tenants, hours=_hours(request)))


def health_page(request: HttpRequest) -> TemplateResponse:
    """The health page; with ?live=1 only its live part, which the open page fetches every REFRESH_SECONDS and
    swaps in place (no reload: the scroll position stays)."""
    if not request.user.has_perm("agents.view_agent"):
        raise PermissionDenied
    tenants = async_to_sync(health_tenants)(user=request.user, slug=request.GET.get("tenant", ""))
    hours = _hours(request)
    data = async_to_sync(agents_health)(tenants=tenants, hours=hours)
    outcomes = outcome_totals(data["history"])
    context = {"health": data, "now": timezone.now(), "refresh_seconds": REFRESH_SECONDS,
               "signins_chart": signins_chart(data["history"]), "latency_chart": latency_chart(data["history"]),
               "signins_legend": signins_legend(data["history"]), "latency_legend": latency_legend(data["history"]),
               "outcomes": outcomes,
               "chart_styles": chart_styles([outcome for outcome, _ in outcomes]),
               "several_tenants": len(tenants) > 1}
    if request.GET.get("live"):
        return TemplateResponse(request, "health/live.html", context)
    return TemplateResponse(request, "health/page.html", {
        **admin.site.each_context(request), **context, "title": "Agent health", "opts": Agent._meta, "hours": hours,
        "hours_choices": HISTORY_HOURS, "tenant_slug": request.GET.get("tenant", "")})


@require_safe
async def healthz(request: HttpRequest) -> JsonResponse:
    """GET /healthz: 200 when this node's database, cache and channel layer answer, else 503 naming the
    failing parts. For load balancers: no sign-in, and nothing about any tenant."""
    failing = await readiness_failures()
    response = (JsonResponse({"status": "unavailable", "failing": failing}, status=503) if failing
                else JsonResponse({"status": "ok"}))
    add_never_cache_headers(response)
    return response


@never_cache
@csrf_protect
@require_http_methods(["GET", "POST"])
def alert_email_confirm(request: HttpRequest, token: str) -> TemplateResponse:
    """/alerts/confirm/<token>/: GET shows whose alerts the address would get and a button; only the button's
    POST confirms, so a mail scanner that opens every link confirms nothing. A forged, altered or expired link,
    or one of an address since removed, is a 400 page saying so."""
    recipient = (alert_recipient_confirm(token=token) if request.method == "POST"
                 else alert_recipient_by_token(token=token))
    if recipient is None:
        return TemplateResponse(request, "health/alert_confirm.html", {"state": "invalid"}, status=400)
    state = "confirmed" if recipient.confirmed_at else "ask"
    return TemplateResponse(request, "health/alert_confirm.html",
                            {"state": state, "address": recipient.address, "tenant_name": recipient.tenant.name})
