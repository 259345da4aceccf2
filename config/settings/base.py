import warnings
from pathlib import Path

from .env import env, https_in_production, required_in_production

# pysaml2 (samlidp/) names, at import, a cipher mode that cryptography has moved; it is never used here.
warnings.filterwarnings("ignore", message="CFB has been moved", module=r"saml2\.")

BASE_DIR = Path(__file__).resolve().parent.parent.parent
# Where the embedded profile keeps its database and generated keys.
STATE_DIR = Path(env("PTA_STATE_DIR", str(BASE_DIR / "var")))
STATE_DIR.mkdir(parents=True, exist_ok=True)

# Not "daphne": its app only lends `runserver` an ASGI server, and it imports Twisted's reactor into every manage.py
# command (a fifth of a command's start-up). The portal runs under `daphne config.asgi:application`.
INSTALLED_APPS = [
    # The admin console's site records who changes what (trail/console.py); the app of the same label.
    "trail.apps.ConsoleAdminConfig",
    # Before django.contrib.auth: its createsuperuser and changepassword (recorded in the trail) are found first.
    "trail",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "django_otp.plugins.otp_static",
    "oauth2_provider",
    "tenant",
    "branding",
    "agents",
    "signin",
    "applications",
    "health",
    "samlidp",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_USER_MODEL = "tenant.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = STATE_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    # A 403 is one line (method, path, user id, reason), not a traceback (config/logfilters.py).
    "filters": {"forbidden_on_one_line": {"()": "config.logfilters.ForbiddenOnOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"],
             "level": env("PTA_LOG_LEVEL", "INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))},
    "loggers": {
        "django.channels.server": {"level": "WARNING"},
        "xmlschema": {"level": "WARNING"},  # pysaml2's schema library announces each schema it loads
        "django.request": {"filters": ["forbidden_on_one_line"]},
        "django.security.csrf": {"filters": ["forbidden_on_one_line"]},
    },
}

# The portal's public base URL, used in agent configuration and as the OpenID issuer: required and https:// in
# production (relying parties compare the issuer verbatim and would send codes over plain http).
PTA_PUBLIC_URL = https_in_production("PTA_PUBLIC_URL",
                                     required_in_production("PTA_PUBLIC_URL", "http://127.0.0.1:8000"))
