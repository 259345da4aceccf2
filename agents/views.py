import json
import logging

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agents.services.authority import CertificateRequestError
from agents.services.registration import RegistrationError, agent_register
from trail.context import Actor, Through, actor_set

logger = logging.getLogger(__name__)
MAX_REGISTRATION_BYTES = 64 * 1024


@csrf_exempt  # a machine client authenticated by its one-time token, not a browser session
@require_POST
def register(request: HttpRequest) -> JsonResponse:
    """POST {token, csr, name?, hostname?, version?} → {agent_id, certificate, ca_certificate, signing_public_key}."""
    if len(request.body) > MAX_REGISTRATION_BYTES:
        return JsonResponse({"error": "too_large", "message": "Request body too large."}, status=413)
    try:
        body = json.loads(request.body)
        fields = {k: body.get(k, "") for k in ("token", "csr", "name", "hostname", "version")}
        if not isinstance(body, dict) or not all(isinstance(v, str) for v in fields.values()):
            raise ValueError
    except (ValueError, AttributeError):
        return JsonResponse({"error": "malformed", "message": "Expected a JSON object of strings."}, status=400)
    # The new agent is an administrative change, made by whoever holds the token (named by its last characters,
    # as the console names tokens): recorded in the audit trail.
    actor = Actor(name=f"agent registration (token …{fields['token'][-4:]})", through=Through.REGISTRATION)
    try:
        with actor_set(actor):
            registration = agent_register(token=fields["token"], csr_pem=fields["csr"], name=fields["name"],
                                          hostname=fields["hostname"], version=fields["version"])
    except CertificateRequestError as exc:
        return JsonResponse({"error": "bad_csr", "message": str(exc)}, status=400)
    except RegistrationError as exc:
        logger.info("agent registration refused: %s", exc)
        return JsonResponse({"error": "bad_token", "message": str(exc)}, status=403)
    agent = registration.agent
    logger.info("agent registered: %s (%s) for tenant %s", agent.name, agent.pk, agent.tenant.slug)
    return JsonResponse({
        "agent_id": str(agent.pk),
        "tenant": str(agent.tenant_id),
        "domains": [d.name for d in agent.domains.all()],
        "certificate": registration.certificate_pem,
        "ca_certificate": registration.ca_certificate_pem,
        "signing_public_key": registration.signing_public_key_pem,
    }, status=201)
