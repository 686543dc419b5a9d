"""The environment every test process starts from (this one, and the daphne processes)."""

TEST_ENV = {
    # Not the published development key: the settings refuse that one outside DEBUG.
    "DJANGO_SECRET_KEY": "tests-only-secret-key-that-is-long-enough-for-django-0123456789",
    "DJANGO_ALLOWED_HOSTS": "testserver,127.0.0.1,localhost,[::1]",
    # The test servers speak plain HTTP on loopback.
    "DJANGO_HTTPS": "false",
    # Sign-in throttling stays on (its own tests count on it), high enough for the suite's logins.
    "LOGIN_FAILURE_LIMIT": "10",
}
