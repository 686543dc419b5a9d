"""Settings for the customer-service realtime product: one module, driven by the environment.

Every variable is read through the typed helpers in `sse_project.env`; see the README's
configuration table for what each one means.
"""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from sse_project.env import envbool, envhostports, envint, envlist, envstr, envtokens

BASE_DIR = Path(__file__).resolve().parent.parent

DEBUG = envbool("DJANGO_DEBUG", False)
_DEV_SECRET = "dev-only-insecure-secret-key-change-me-in-production-0123456789"
SECRET_KEY = envstr("DJANGO_SECRET_KEY") or _DEV_SECRET
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
if not DEBUG and SECRET_KEY == _DEV_SECRET and "*" in ALLOWED_HOSTS:
    # A server open to every host name with the published dev key is a production
    # deployment that forgot its secret: refuse to run half-configured.
    raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_ALLOWED_HOSTS is '*'")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "realtime",
    "dashboard",
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

ROOT_URLCONF = "sse_project.urls"
ASGI_APPLICATION = "sse_project.asgi.application"

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

DATABASES = {
    "default": dj_database_url.parse(
        envstr("DATABASE_URL") or f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=0,
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            # Two daphne processes share one SQLite file: wait for the write lock instead of
            # failing at once with "database is locked".
            "timeout": 20,
            # A transaction takes the write lock when it begins, so one that reads before it
            # writes (the recorder, the outbox relay) waits for the lock instead of failing
            # when it tries to upgrade a read lock another writer is waiting behind.
            "transaction_mode": "IMMEDIATE",
            # WAL: readers (snapshots, streams' pages) never wait for a writer, nor it for them.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/workbench/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

# --- The realtime bus (docs/bus.md section 8) -------------------------------------

REDIS_URL = envstr("REDIS_URL")
# Redis Sentinel instead of one server: `host:port,host:port` and the master's name. When
# set, every Redis use of the product (bus, history, presence, the session keys) asks the
# sentinels for the current master and follows a failover.
REDIS_SENTINELS = envhostports("REDIS_SENTINELS")
REDIS_SENTINEL_MASTER = envstr("REDIS_SENTINEL_MASTER")
if bool(REDIS_SENTINELS) != bool(REDIS_SENTINEL_MASTER):
    raise ImproperlyConfigured("REDIS_SENTINELS and REDIS_SENTINEL_MASTER are set together or not at all")
if REDIS_SENTINELS and REDIS_URL:
    raise ImproperlyConfigured("set REDIS_URL or REDIS_SENTINELS, not both")
USE_REDIS_SSE = envbool("USE_REDIS_SSE", True)
SSE_USE_REDIS = bool(REDIS_URL or REDIS_SENTINELS) and USE_REDIS_SSE
# 15 s keeps idle streams alive through proxies that cut connections after 30-60 s.
SSE_HEARTBEAT_SECONDS = envint("SSE_HEARTBEAT_SECONDS", 15, minimum=1, maximum=3600)
# A limit against subscription floods: a page needs at most a handful of channels.
SSE_MAX_CHANNELS_PER_CONNECTION = envint("SSE_MAX_CHANNELS_PER_CONNECTION", 20, minimum=1, maximum=1000)
SSE_MAX_CONNECTIONS = envint("SSE_MAX_CONNECTIONS", 10000, minimum=1)
# 1000 events cover several minutes of a busy session: enough to ride out a reconnect.
SSE_HISTORY_SIZE = envint("SSE_HISTORY_SIZE", 1000, minimum=0, maximum=1_000_000)
# Browsers wait this long before reconnecting a dropped EventSource.
SSE_RETRY_MS = envint("SSE_RETRY_MS", 2000, minimum=100, maximum=600_000)
SERVICE_TOKENS = envtokens("SERVICE_TOKENS")
# An agent stays "online" this long after their last workbench stream closes (reloads).
SSE_PRESENCE_GRACE_SECONDS = envint("SSE_PRESENCE_GRACE_SECONDS", 20, minimum=1, maximum=3600)
# SIGTERM ends every stream properly (the chunked terminator) and waits this long for them
# to go before the process exits: 10 s is far more than flushing a few KiB per stream takes,
# and well inside systemd's default 90 s stop timeout.
SSE_SHUTDOWN_SECONDS = envint("SSE_SHUTDOWN_SECONDS", 10, minimum=0, maximum=300)
# A channel's history expires this long after its last event, so Redis holds the channels in
# use, not every channel ever used. The record of a conversation is in the database.
SSE_HISTORY_TTL_SECONDS = envint("SSE_HISTORY_TTL_SECONDS", 604800, minimum=0, maximum=10 * 365 * 86400)
# Each server process runs the outbox relay and the recorder (realtime.background). The
# test suite turns this off in its own process and drives their single steps itself.
SSE_BACKGROUND = envbool("SSE_BACKGROUND", True)

if SSE_USE_REDIS:
    _redis_host: dict[str, object] | str = (
        {"sentinels": REDIS_SENTINELS, "master_name": REDIS_SENTINEL_MASTER} if REDIS_SENTINELS else str(REDIS_URL)
    )
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "realtime.layers.RedisSSEChannelLayer",
            "CONFIG": {"hosts": [_redis_host]},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "realtime.layers.MemorySSEChannelLayer"}}

# --- The pages and the demo -----------------------------------------------------------

# A customer waiting longer than this (seconds) is shown in the warning colour: a minute is
# about as long as people wait in a chat before they give up.
QUEUE_SLA_SECONDS = envint("QUEUE_SLA_SECONDS", 60, minimum=1, maximum=86_400)
# `make run` sets this: play the ai_chatbot inside the server process (in-memory layer only;
# with Redis run `manage.py simulate_chatbot` as its own process). See README "The demo".
SIMULATE_CHATBOT = envbool("SIMULATE_CHATBOT", False)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
