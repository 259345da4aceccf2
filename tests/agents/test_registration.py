import hashlib
import threading

import pta_protocol as protocol
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from django.db import connection
from django.utils import timezone

from agents.models import Agent, RegistrationToken, TenantAuthority
from agents.services.authority import CERTIFICATE_DAYS, CertificateRequestError, certificate_verify
from agents.services.registration import RegistrationError, agent_register, registration_token_issue


def make_csr(key=None, name="agent") -> str:
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def test_token_is_stored_only_hashed(tenant_a):
    token, raw = registration_token_issue(tenant=tenant_a)
    assert raw.startswith("pta_") and len(raw) > 40
    assert token.token_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert token.hint == raw[-4:]
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM agents_registrationtoken")
        rows = cursor.fetchall()
    assert raw not in repr(rows)


def test_token_works_once(tenant_a):
    _, raw = registration_token_issue(tenant=tenant_a)
    registration = agent_register(token=raw, csr_pem=make_csr(), name="first")
    assert registration.agent.tenant == tenant_a
    with pytest.raises(RegistrationError):
        agent_register(token=raw, csr_pem=make_csr(), name="second")
    assert Agent.objects.count() == 1
    assert RegistrationToken.objects.get().used_by == registration.agent


def test_expired_token_is_refused(tenant_a):
    token, raw = registration_token_issue(tenant=tenant_a, ttl_seconds=60)
    RegistrationToken.objects.filter(pk=token.pk).update(expires_at=timezone.now())
    with pytest.raises(RegistrationError):
        agent_register(token=raw, csr_pem=make_csr())
    assert not Agent.objects.exists()


def test_unknown_token_is_refused(tenant_a):
    registration_token_issue(tenant=tenant_a)
    with pytest.raises(RegistrationError):
        agent_register(token="pta_not-a-token", csr_pem=make_csr())


@pytest.mark.django_db(transaction=True)
def test_concurrent_use_of_one_token_registers_exactly_one_agent(tenant_factory):
    tenant = tenant_factory("Race Corp", ["race.example.test"])
    _, raw = registration_token_issue(tenant=tenant)
    csrs = [make_csr(name=f"racer-{i}") for i in range(4)]
    outcomes: list[str] = []
    barrier = threading.Barrier(len(csrs))

    def register(csr: str) -> None:
        barrier.wait()
        try:
            agent_register(token=raw, csr_pem=csr)
            outcomes.append("ok")
        except RegistrationError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=register, args=(csr,)) for csr in csrs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(outcomes) == ["ok", "refused", "refused", "refused"]
    assert Agent.objects.filter(tenant=tenant).count() == 1


def test_certificate_names_agent_and_tenant_and_lasts_180_days(tenant_a):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _, raw = registration_token_issue(tenant=tenant_a, domains=tenant_a.domains.all())
    registration = agent_register(token=raw, csr_pem=make_csr(key), name="dc-side-1")
    cert = x509.load_pem_x509_certificate(registration.certificate_pem.encode())
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dc-side-1"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == str(tenant_a.pk)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"urn:pta:agent:{registration.agent.pk}" in san.get_values_for_type(x509.UniformResourceIdentifier)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(lifetime.days - CERTIFICATE_DAYS) <= 1
    assert registration.agent.key_fingerprint == protocol.key_fingerprint(key.public_key())
    assert certificate_verify(tenant_id=tenant_a.pk, certificate=cert)
    assert list(registration.agent.domains.all()) == list(tenant_a.domains.all())


def test_certificate_of_another_tenants_ca_does_not_verify(tenant_a, tenant_b, agent_factory):
    agent_b, _ = agent_factory(tenant_b)
    cert_b = x509.load_pem_x509_certificate(agent_b.certificate_pem.encode())
    agent_factory(tenant_a)  # creates A's CA
    assert not certificate_verify(tenant_id=tenant_a.pk, certificate=cert_b)
    assert certificate_verify(tenant_id=tenant_b.pk, certificate=cert_b)


def test_ca_private_keys_are_encrypted_at_rest(tenant_a, agent_factory):
    agent_factory(tenant_a)
    authority = TenantAuthority.objects.get(tenant=tenant_a)
    blob = bytes(authority.ca_private_key_encrypted)
    with pytest.raises(ValueError):
        serialization.load_der_private_key(blob, None)
    assert b"PRIVATE KEY" not in blob


@pytest.mark.parametrize("bad", ["small-rsa", "ec-key", "garbage", "tampered"])
def test_bad_csrs_are_refused_and_leave_the_token_usable(tenant_a, bad):
    _, raw = registration_token_issue(tenant=tenant_a)
    if bad == "small-rsa":
        csr = make_csr(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 - the point
    elif bad == "ec-key":
        csr = make_csr(ec.generate_private_key(ec.SECP256R1()))
    elif bad == "garbage":
        csr = "-----BEGIN CERTIFICATE REQUEST-----\nnope\n-----END CERTIFICATE REQUEST-----\n"
    else:
        good = x509.load_pem_x509_csr(make_csr().encode())
        der = bytearray(good.public_bytes(serialization.Encoding.DER))
        der[-5] ^= 0xFF  # corrupt the signature
        csr = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    with pytest.raises(CertificateRequestError):
        agent_register(token=raw, csr_pem=csr)
    assert agent_register(token=raw, csr_pem=make_csr()).agent


def test_token_domains_must_belong_to_the_tenant(tenant_a, tenant_b):
    with pytest.raises(ValueError):
        registration_token_issue(tenant=tenant_a, domains=tenant_b.domains.all())


def test_registration_endpoint(client, tenant_a):
    _, raw = registration_token_issue(tenant=tenant_a)
    response = client.post("/agent/register/", {"token": raw, "csr": make_csr(), "name": "web"},
                           content_type="application/json")
    assert response.status_code == 201
    body = response.json()
    assert {"agent_id", "certificate", "ca_certificate", "signing_public_key"} <= body.keys()
    assert body["domains"] == ["alpha.example.test"]
    again = client.post("/agent/register/", {"token": raw, "csr": make_csr()}, content_type="application/json")
    assert again.status_code == 403 and again.json()["error"] == "bad_token"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"token": 5}', b"{" * 5000, b"\xff\xfe"])
def test_registration_endpoint_answers_bad_input_with_4xx(client, body):
    response = client.post("/agent/register/", body, content_type="application/json")
    assert response.status_code in (400, 403, 413)
    assert "error" in response.json()

