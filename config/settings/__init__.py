"""Settings, split by concern. With no environment set this is the embedded default profile
(SQLite, in-memory channel layer, eager Celery); DATABASE_URL and REDIS_URL switch to production."""

from .audit import *  # noqa: F403
from .base import *  # noqa: F403
from .cache import *  # noqa: F403
from .celery import *  # noqa: F403
from .channels import *  # noqa: F403
from .database import *  # noqa: F403
from .health import *  # noqa: F403
from .oidc import *  # noqa: F403
from .security import *  # noqa: F403
from .signin import *  # noqa: F403
