"""Settings of baseline (b): channels-redis's stock pub/sub layer (msgpack), nothing else."""

import os

SECRET_KEY = "bench-naive-baseline-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["channels"]
DATABASES: dict = {}
USE_TZ = True
ASGI_APPLICATION = "bench.naive.asgi.application"
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "CONFIG": {"hosts": [os.environ["REDIS_URL"]]},
    }
}
LOGGING = {"version": 1, "disable_existing_loggers": False, "root": {"level": "WARNING"}}
