"""Who a directory answer signs in (signin/services/users.py): tenant + objectGUID, within the answering agent's
domains, never a cloud-only account, never a move to another domain nor a rename of another user."""

import uuid

import pytest

from signin.services.users import IdentityRejected, directory_upn, user_sync
from tenant.models import User
from tenant.services import tenant_create

pytestmark = pytest.mark.django_db


@pytest.fixture
def tenant():
    return tenant_create(name="Forests", domains=["east.example.test", "west.example.test"])


def directory(upn, guid=None, **extra):
    return {"upn": upn, "object_guid": guid or str(uuid.uuid4()), "display_name": "Someone", **extra}


def test_the_agent_is_believed_only_within_its_domains():
    served = ("east.example.test",)
    assert directory_upn(typed_upn="a@east.example.test", directory={}, served_domains=served) == "a@east.example.test"
    assert directory_upn(typed_upn="a.mail@east.example.test", directory={"upn": "A@East.Example.Test"},
                         served_domains=served) == "a@east.example.test"
    with pytest.raises(IdentityRejected):
        directory_upn(typed_upn="a@east.example.test", directory={"upn": "boss@west.example.test"},
                      served_domains=served)


def test_first_sign_in_creates_and_later_ones_update(tenant):
    guid = str(uuid.uuid4())
    user = user_sync(tenant=tenant, upn="ann@east.example.test", directory=directory("ann@east.example.test", guid))
    assert (user.immutable_id, user.source, user.display_name) == (guid, "on-premises", "Someone")
    again = user_sync(tenant=tenant, upn="ann@east.example.test",
                      directory=directory("ann@east.example.test", guid, display_name="Ann"), known=user)
    assert again.pk == user.pk and again.display_name == "Ann"


def test_a_rename_in_ad_follows_the_guid_within_its_domain(tenant):
    guid = str(uuid.uuid4())
    user = user_sync(tenant=tenant, upn="ann@east.example.test", directory=directory("ann@east.example.test", guid))
    renamed = user_sync(tenant=tenant, upn="ann.smith@east.example.test",
                        directory=directory("ann.smith@east.example.test", guid))
    assert renamed.pk == user.pk and renamed.upn == "ann.smith@east.example.test"


def test_a_guid_never_moves_a_user_to_another_domain(tenant):
    guid = str(uuid.uuid4())
    user = user_sync(tenant=tenant, upn="ann@east.example.test", directory=directory("ann@east.example.test", guid))
    with pytest.raises(IdentityRejected):
        user_sync(tenant=tenant, upn="ann@west.example.test", directory=directory("ann@west.example.test", guid))
    user.refresh_from_db()
    assert user.upn == "ann@east.example.test"


def test_a_guid_never_renames_another_user(tenant):
    ann = user_sync(tenant=tenant, upn="ann@east.example.test", directory=directory("ann@east.example.test"))
    bob = user_sync(tenant=tenant, upn="bob@east.example.test", directory=directory("bob@east.example.test"))
    with pytest.raises(IdentityRejected):  # "bob" with ann's GUID: ann would be renamed over bob
        User.objects.filter(pk=bob.pk).update(immutable_id="")
        user_sync(tenant=tenant, upn="bob@east.example.test", directory=directory("bob@east.example.test",
                                                                                    ann.immutable_id))
    ann.refresh_from_db()
    assert ann.upn == "ann@east.example.test"


def test_a_new_person_with_a_leavers_upn_is_a_new_user(tenant):
    leaver = user_sync(tenant=tenant, upn="ivan@east.example.test", directory=directory("ivan@east.example.test"))
    hire = user_sync(tenant=tenant, upn="ivan@east.example.test", directory=directory("ivan@east.example.test"))
    leaver.refresh_from_db()
    assert hire.pk != leaver.pk and hire.upn == "ivan@east.example.test" and hire.is_active
    assert not leaver.is_active
    assert leaver.upn.startswith("ivan+departed-") and leaver.upn.endswith("@east.example.test")


def test_cloud_accounts_and_other_tenants_users_are_never_signed_in(tenant):
    User.objects.create_user("boss@east.example.test", "Cl0ud-pa55-word", tenant=tenant, source="cloud")
    with pytest.raises(IdentityRejected):
        user_sync(tenant=tenant, upn="boss@east.example.test", directory=directory("boss@east.example.test"))
    other = tenant_create(name="Other", domains=["other.example.test"])
    User(upn="squat@east.example.test", tenant=other).save()  # data from before UPNs were checked
    with pytest.raises(IdentityRejected):
        user_sync(tenant=tenant, upn="squat@east.example.test", directory=directory("squat@east.example.test"))


def test_the_mail_is_vouched_for_only_in_a_domain_the_answering_agent_serves(tenant):
    """Second review, finding 4: both forests' domains are the tenant's; the east agent's word is no proof of a
    west address (end to end: tests/integration/test_oidc_conformance.py, email_verified)."""
    from signin.oidc import _email_verified

    guid, upn = str(uuid.uuid4()), "ann@east.example.test"

    def sync(mail: str, served=("east.example.test",)) -> User:
        return user_sync(tenant=tenant, upn=upn, directory=directory(upn, guid, mail=mail), served_domains=served)

    user = sync("boss@west.example.test")
    assert user.email == "boss@west.example.test" and _email_verified(user) is False  # another forest's address
    user = sync("Ann.Smith@East.example.test", served=())  # not one the answering agent serves: only the UPN's
    assert _email_verified(user) is True
    user = sync("ann@mail.east.example.test", served=("east.example.test", "mail.east.example.test"))
    assert user.directory_verified_email == "ann@mail.east.example.test"
    assert _email_verified(user) is False  # served, but not a domain the tenant verified
    user = sync("boss@west.example.test", served=("east.example.test", "west.example.test"))
    assert _email_verified(user) is True  # this agent serves west too: one forest
    user = sync("boss@west.example.test")  # AD's answer through an agent that does not: no longer vouched for
    assert user.directory_verified_email == "" and _email_verified(user) is False
    user = sync("", served=("east.example.test", "west.example.test"))  # no mail returned: what is known stays
    assert user.email == "boss@west.example.test" and _email_verified(user) is False
    User.objects.filter(pk=user.pk).update(email="")
    user.refresh_from_db()
    assert _email_verified(user) is None


@pytest.mark.postgresql  # SQLite runs one write transaction at a time: there is no race to play
@pytest.mark.django_db(transaction=True)
def test_first_sign_ins_of_one_person_at_once_are_one_user(tenant):
    """Two first sign-ins of a new user answered at the same moment (the soak found it: eight clients, 200
    accounts): both sign the one user in; the later insert finds the earlier one instead of failing."""
    import threading

    from django.db import connection

    for round_ in range(15):
        upn, guid = f"race{round_}@east.example.test", str(uuid.uuid4())
        barrier = threading.Barrier(2)
        users: list[User] = []
        errors: list[Exception] = []

        def sign_in(upn=upn, guid=guid, barrier=barrier, users=users, errors=errors) -> None:
            try:
                barrier.wait(5)
                users.append(user_sync(tenant=tenant, upn=upn, directory=directory(upn, guid)))
            except Exception as exc:  # noqa: BLE001 - the failure is the finding
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=sign_in) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert not errors, errors
        assert users[0].pk == users[1].pk
