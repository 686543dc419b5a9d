"""Settings for the customer-service realtime product: one module, driven by the environment.

Every variable is read through the typed helpers in `sse_project.env`; docs/bus.md section 8
(the bus, security), docs/pages.md (the pages and the demo) and docs/deploy/helpdesk.env say
what each one means.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from sse_project.env import envbool, envhostports, envint, envlist, envstr, envtokens

BASE_DIR = Path(__file__).resolve().parent.parent

# Off unless asked for: a process that forgets the variable runs as in production.
DEBUG = envbool("DJANGO_DEBUG", False)
# Published in this repository: good for a laptop (DJANGO_DEBUG=true), never for a server.
_DEV_SECRET = "dev-only-insecure-secret-key-change-me-in-production-0123456789"
SECRET_KEY = envstr("DJANGO_SECRET_KEY") or _DEV_SECRET
ALLOWED_HOSTS = envlist("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"] if DEBUG else [])
if not DEBUG:
    # A process that serves for real refuses to start half-configured (docs/operations.md).
    if SECRET_KEY == _DEV_SECRET:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: give it a long random value (50+ characters), or set "
            "DJANGO_DEBUG=true on a development machine"
        )
    if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY is too weak: at least 50 characters, not repetitive")
    if not ALLOWED_HOSTS:
        raise ImproperlyConfigured(
            "DJANGO_ALLOWED_HOSTS is empty: name the host names this site answers to (comma-separated), "
            "or set DJANGO_DEBUG=true on a development machine"
        )

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "axes",
    "realtime",
    "dashboard",
]

MIDDLEWARE = [
    # First: counts every response by route and status for /metrics, and logs each refused
    # request, including what the middleware below answers on its own (realtime.metrics).
    "realtime.metrics.RequestMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # templates/404.html in DEBUG too (Django's technical page otherwise); after the user is known.
    "sse_project.not_found.FriendlyNotFoundMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into its answer.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # First: refuses a sign-in while its username or address is locked out.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
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
# PostgreSQL: each process keeps a pool of connections (psycopg_pool, through Django's "pool"
# option). Without one, every request opens a connection of its own (a server process forked,
# authenticated) and a burst of commands opens as many as there are requests in flight, until
# PostgreSQL refuses more ("too many clients"). With it, a request takes a connection in
# microseconds and waits, up to DATABASE_POOL_TIMEOUT seconds, when all are busy. 0: no pool.
DATABASE_POOL_SIZE = envint("DATABASE_POOL_SIZE", 10, minimum=0, maximum=1000)
DATABASE_POOL_TIMEOUT = envint("DATABASE_POOL_TIMEOUT", 10, minimum=1, maximum=600)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql" and DATABASE_POOL_SIZE:
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DATABASE_POOL_SIZE),
        "max_size": DATABASE_POOL_SIZE,
        "timeout": DATABASE_POOL_TIMEOUT,
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
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# --- Signing in: throttled per username and per address (django-axes) -------------------
# Failed attempts are rows in the database, so every process counts the same ones, with or
# without Redis, and supervisors see them in the admin. After LOGIN_FAILURE_LIMIT failures in
# a row for a username, or from an address, signing in is refused (even with the right
# password) for LOGIN_LOCKOUT_MINUTES; a successful sign-in clears the count.
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 10, minimum=1, maximum=1000)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_LOCKOUT_MINUTES", 15, minimum=1, maximum=7 * 24 * 60))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]  # either one locks
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False  # one log line per lockout is enough (logging below)

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
# Derived, not read from the environment: whether the bus runs on Redis (a Redis is
# configured and USE_REDIS_SSE does not turn it off) or on the in-memory layer.
BUS_ON_REDIS = bool(REDIS_URL or REDIS_SENTINELS) and USE_REDIS_SSE
# 15 s keeps idle streams alive through proxies that cut connections after 30-60 s.
SSE_HEARTBEAT_SECONDS = envint("SSE_HEARTBEAT_SECONDS", 15, minimum=1, maximum=3600)
# A limit against subscription floods: a page needs at most a handful of channels.
SSE_MAX_CHANNELS_PER_CONNECTION = envint("SSE_MAX_CHANNELS_PER_CONNECTION", 20, minimum=1, maximum=1000)
SSE_MAX_CONNECTIONS = envint("SSE_MAX_CONNECTIONS", 10000, minimum=1)
# Open streams per person (agent, supervisor or service identity) across every process: a
# workbench needs one per tab, so ten leaves room for tabs and reconnects, and no one person
# can take every slot of a process.
SSE_MAX_STREAMS_PER_USER = envint("SSE_MAX_STREAMS_PER_USER", 10, minimum=1, maximum=100_000)
# Events per second one service identity may publish across every process (a token bucket
# holding twice as many, for bursts); escalations count too.
SSE_PUBLISH_RATE = envint("SSE_PUBLISH_RATE", 200, minimum=1, maximum=10_000_000)
# 1000 events cover several minutes of a busy session: enough to ride out a reconnect.
SSE_HISTORY_SIZE = envint("SSE_HISTORY_SIZE", 1000, minimum=0, maximum=1_000_000)
# Browsers wait this long before reconnecting a dropped EventSource.
SSE_RETRY_MS = envint("SSE_RETRY_MS", 2000, minimum=100, maximum=600_000)
SERVICE_TOKENS = envtokens("SERVICE_TOKENS")
# An agent stays "online" this long after their last workbench stream closes (reloads).
SSE_PRESENCE_GRACE_SECONDS = envint("SSE_PRESENCE_GRACE_SECONDS", 20, minimum=1, maximum=3600)
# Who is viewing a session: a process that stops renewing (it died) still counts its viewers
# this long; each process renews three times per lease (realtime.viewers).
SSE_VIEWERS_LEASE_SECONDS = envint("SSE_VIEWERS_LEASE_SECONDS", 10, minimum=3, maximum=3600)
# A connection must deliver a whole request (line, headers, body) within this many seconds
# of being ready for one; slower is a 408 and the connection closes (slowloris).
HTTP_REQUEST_SECONDS = envint("HTTP_REQUEST_SECONDS", 30, minimum=1, maximum=3600)
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

if BUS_ON_REDIS:
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
# ... and overdue (red) after this long; by default three times the warning.
QUEUE_OVERDUE_SECONDS = envint("QUEUE_OVERDUE_SECONDS", 3 * QUEUE_SLA_SECONDS, minimum=1, maximum=86_400)
# The same two stages for a customer waiting for the agent's reply in an ongoing session.
REPLY_SLA_SECONDS = envint("REPLY_SLA_SECONDS", 60, minimum=1, maximum=86_400)
REPLY_OVERDUE_SECONDS = envint("REPLY_OVERDUE_SECONDS", 3 * REPLY_SLA_SECONDS, minimum=1, maximum=86_400)
if QUEUE_OVERDUE_SECONDS <= QUEUE_SLA_SECONDS:
    raise ImproperlyConfigured("QUEUE_OVERDUE_SECONDS must be greater than QUEUE_SLA_SECONDS")
if REPLY_OVERDUE_SECONDS <= REPLY_SLA_SECONDS:
    raise ImproperlyConfigured("REPLY_OVERDUE_SECONDS must be greater than REPLY_SLA_SECONDS")
# Who gives waiting sessions to agents (docs/sessions.md): "manual" (agents accept from the
# queue) or "round_robin" (each server process also assigns them, to available agents who have
# a workbench open, at most ASSIGNMENT_MAX_PER_AGENT open sessions each).
ASSIGNMENT = envstr("ASSIGNMENT", "manual")
if ASSIGNMENT not in ("manual", "round_robin"):
    raise ImproperlyConfigured(f"ASSIGNMENT must be manual or round_robin, not {ASSIGNMENT!r}")
ASSIGNMENT_MAX_PER_AGENT = envint("ASSIGNMENT_MAX_PER_AGENT", 3, minimum=1, maximum=100)
ASSIGNMENT_INTERVAL_SECONDS = envint("ASSIGNMENT_INTERVAL_SECONDS", 2, minimum=1, maximum=60)
# `make run` sets this: play the ai_chatbot inside the server process (in-memory layer only;
# with Redis run `manage.py simulate_chatbot` as its own process). See docs/pages.md "The demo".
SIMULATE_CHATBOT = envbool("SIMULATE_CHATBOT", False)

# --- HTTPS and what browsers are told (docs/operations.md) --------------------------------

# The site is served over HTTPS (usually by a proxy in front that terminates TLS): secure
# cookies, a redirect from plain HTTP and HSTS. On unless DJANGO_DEBUG is.
HTTPS = envbool("DJANGO_HTTPS", not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS
# Load balancers probe health, and Prometheus scrapes metrics, over plain HTTP on the
# process's own port.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
# A year, once HTTPS works for good; 0 turns HSTS off.
SECURE_HSTS_SECONDS = envint("DJANGO_HSTS_SECONDS", 31_536_000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("DJANGO_HSTS_PRELOAD", False)
# The header a TLS-terminating proxy sets to say the request came over HTTPS, such as
# X-Forwarded-Proto (it must overwrite what clients send in it).
_proxy_ssl_header = envstr("DJANGO_SECURE_PROXY_SSL_HEADER")
if _proxy_ssl_header is not None and not re.fullmatch(r"[A-Za-z0-9-]{1,64}", _proxy_ssl_header):
    raise ImproperlyConfigured(f"DJANGO_SECURE_PROXY_SSL_HEADER must be a header name, not {_proxy_ssl_header[:80]!r}")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https") if _proxy_ssl_header else None
)
X_FRAME_OPTIONS = "DENY"
# The pages need nothing inline and nothing from elsewhere (django-csp; Django 5.2 has no CSP).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
}
# The error page of DJANGO_DEBUG=true hides the password inside any *_URL setting too.
DEFAULT_EXCEPTION_REPORTER_FILTER = "sse_project.debug.ReporterFilter"

# --- Metrics and logs (docs/operations.md "Metrics" and "Logs") ---------------------------

# GET /metrics answers supervisors signed in, and a scraper sending `Authorization: Bearer
# <METRICS_TOKEN>`; unset, only supervisors. A token of its own: a scraper holds no service's.
METRICS_TOKEN = envstr("METRICS_TOKEN")
if METRICS_TOKEN is not None:
    if len(METRICS_TOKEN) < 16:
        raise ImproperlyConfigured("METRICS_TOKEN is shorter than 16 characters")
    if METRICS_TOKEN in SERVICE_TOKENS:
        raise ImproperlyConfigured("METRICS_TOKEN is also a token in SERVICE_TOKENS: give it a value of its own")

# One line per record: `plain` text, or `json`, one JSON object per line with time, level,
# logger and message (python-json-logger) for a log collector.
LOG_FORMAT = str(envstr("LOG_FORMAT", "plain"))
if LOG_FORMAT not in ("plain", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be plain or json, not {LOG_FORMAT[:40]!r}")
LOG_LEVEL = str(envstr("LOG_LEVEL", "INFO")).upper()
if LOG_LEVEL not in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"):
    raise ImproperlyConfigured(f"LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {LOG_LEVEL[:40]!r}")
if LOG_FORMAT == "json":
    # Python's warnings go through logging too, so every line on stderr is JSON.
    logging.captureWarnings(True)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(levelname)s %(name)s %(process)d %(message)s",
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",  # ISO 8601, UTC
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"daphne": {"level": "WARNING"}, "django.channels.server": {"level": "WARNING"}},
}
