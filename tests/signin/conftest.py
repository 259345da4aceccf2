import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def clean_signin_state():
    """Each sign-in test starts and ends with an empty cache (sessions, familiar places) and lockout store."""
    from signin.services.lockout import lockout_store

    cache.clear()
    lockout_store().clear()
    yield
    lockout_store().clear()
    cache.clear()
