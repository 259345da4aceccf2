"""The sign-in record: written whatever happened meanwhile, before the answer."""

import uuid

import pytest
from django.db import IntegrityError

from signin.models import SignInEvent
from signin.services.records import signin_event_record


# Autocommit, as in the sign-in's worker threads: the record's foreign keys are checked as it commits.
@pytest.mark.django_db(transaction=True)
def test_the_record_of_an_answer_from_an_agent_deleted_meanwhile_is_kept_without_it(tenant_a):
    event = signin_event_record(username="someone@alpha.example.test", tenant=tenant_a, outcome="success",
                                channel="web", agent_id=uuid.uuid4())
    stored = SignInEvent.objects.get(pk=event.pk)
    assert stored.agent_id is None and stored.outcome == "success" and stored.tenant_id == tenant_a.pk


@pytest.mark.django_db(transaction=True)
def test_a_record_naming_a_tenant_that_is_gone_is_refused(tenant_a):
    with pytest.raises(IntegrityError):
        signin_event_record(username="someone@alpha.example.test", tenant_id=uuid.uuid4(), outcome="success",
                            channel="web")
    assert not SignInEvent.objects.exists()
