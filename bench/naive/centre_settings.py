"""Settings of the naive contact centre: the product's database and accounts, Django's own stack.

What is shared with the product, so one load process drives both on one database: the
database (`DATABASES`, from DATABASE_URL exactly as the product reads it), `SECRET_KEY` (so
a session cookie minted for the product, with its session-auth hash, signs in here too), and
Django's default session engine and cookie names (the product sets none of them either). The
rest is what a first version writes: Django's stock middleware (sessions, CSRF, auth), plain
views, Channels' stock `AuthMiddlewareStack` and channels-redis's stock pub/sub layer.
None of the product's middleware, outbox, recorder, hub or SSE code runs here.
"""

import os

from sse_project import settings as _product

SECRET_KEY = _product.SECRET_KEY
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "channels",
    # The product's models only (bench/naive/centre_apps.py): none of its ready() hooks.
    "bench.naive.centre_apps.RealtimeModels",
    "bench.naive.centre_apps.DashboardModels",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
# The sessions the bench mints name ModelBackend (BACKEND_SESSION_KEY): it must be listed.
AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend"]
# The product's names for these, which are Django's defaults (it overrides none of them).
SESSION_ENGINE = getattr(_product, "SESSION_ENGINE", "django.contrib.sessions.backends.db")
SESSION_COOKIE_NAME = getattr(_product, "SESSION_COOKIE_NAME", "sessionid")
CSRF_COOKIE_NAME = getattr(_product, "CSRF_COOKIE_NAME", "csrftoken")
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _product.HTTPS

ROOT_URLCONF = "bench.naive.centre_urls"
ASGI_APPLICATION = "bench.naive.centre_asgi.application"
DATABASES = _product.DATABASES
DEFAULT_AUTO_FIELD = _product.DEFAULT_AUTO_FIELD
USE_TZ = True
TIME_ZONE = "UTC"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
    }
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
