"""Every request the agent must refuse is refused, with a code, before anything is decrypted."""

import time

import pta_protocol as protocol
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from pta_agent.admission import admission_for
from pta_protocol import ProtocolError

from .conftest import DOMAIN, TENANT


@pytest.fixture
def admission(identity):
    return admission_for(tenant=TENANT, domains=[DOMAIN.upper()], key_id=identity.key_id,
                         portal_signing_key=identity.portal_signing_key)


def refusal_code(admission, request, **kwargs) -> str:
    with pytest.raises(ProtocolError) as caught:
        admission.check(request, **kwargs)
        admission.remember(request, **kwargs)
    assert caught.value.request_id == request.request_id  # the error frame names the request
    return caught.value.code


def test_a_good_request_is_admitted(admission, make_request):
    request = make_request()
    admission.check(request)
    admission.remember(request)


def test_a_request_signed_by_another_key_is_refused(admission, make_request):
    assert refusal_code(admission, make_request(signing_key=ed25519.Ed25519PrivateKey.generate())) == "bad_signature"


def test_a_tampered_request_is_refused(admission, make_request):
    import dataclasses

    request = dataclasses.replace(make_request(), username="mallory@corp.example.test")
    assert refusal_code(admission, request) == "bad_signature"


def test_an_expired_request_is_refused(admission, make_request):
    assert refusal_code(admission, make_request(expires_at=time.time() - 1)) == "expired"


def test_a_request_expiring_too_far_ahead_is_refused(admission, make_request):
    expires_at = time.time() + protocol.MAX_REQUEST_AGE_SECONDS + 60
    assert refusal_code(admission, make_request(expires_at=expires_at)) == "expired"


def test_a_replayed_request_is_refused(admission, make_request):
    request = make_request()
    admission.check(request)
    admission.remember(request)
    assert refusal_code(admission, request) == "replay"


def test_a_request_for_another_tenant_is_refused(admission, make_request):
    assert refusal_code(admission, make_request(tenant="another-tenant")) == "wrong_tenant"


def test_a_request_for_another_domain_is_refused(admission, make_request):
    assert refusal_code(admission, make_request(domain="other.example.test")) == "wrong_domain"


def test_a_request_for_another_key_is_refused(admission, make_request):
    assert refusal_code(admission, make_request(key_id="0" * 64)) == "wrong_key"


def test_domains_compare_case_insensitively(admission, make_request):
    admission.check(make_request(domain=DOMAIN.upper()))
