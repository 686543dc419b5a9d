"""The settings of the test run: the product's own, with the two values a process that is not
in DEBUG needs to start (a test secret and the test host names), unless the environment gives
them. Processes the tests start get the same values from tests/support/procs.base_env."""

import os

from tests.support.env import TEST_ENV

for _name, _value in TEST_ENV.items():
    os.environ.setdefault(_name, _value)

from sse_project.settings import *  # noqa: E402,F403

# The PostgreSQL pass of `make test` (tests/support/databases.py): the in-process tests on a
# database pytest-django creates on that server ("test_helpdesk").
if os.environ.get("TEST_DB") == "postgres":
    import dj_database_url

    from tests.support.databases import check_postgres, postgres_url

    check_postgres()
    DATABASES = {"default": dj_database_url.parse(postgres_url("helpdesk"))}  # noqa: F405
