"""What the DEBUG error page may show of the settings."""

from __future__ import annotations

import re
from typing import Any

from django.views.debug import SafeExceptionReporterFilter

# user:password@ in a URL (redis://:secret@host, postgres://user:secret@host/db).
_URL_PASSWORD = re.compile(r"(?<=://)([^/@:]*):[^/@]*@")


class ReporterFilter(SafeExceptionReporterFilter):
    """Django's filter hides settings whose names say secret (KEY, TOKEN, PASS...); this one
    also hides the password inside the value of a URL setting (REDIS_URL, DATABASE_URL)."""

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        if isinstance(cleansed, str) and "://" in cleansed:
            return _URL_PASSWORD.sub(rf"\1:{self.cleansed_substitute}@", cleansed)
        return cleansed
