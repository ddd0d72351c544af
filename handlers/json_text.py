"""JSON as the service writes it to the database: JSONB values, and rows inserted together."""
from datetime import date, datetime
from typing import Any

import orjson

from handlers.timeutil import iso


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


# PostgreSQL keeps the parsed value, so the text's spelling does not matter; instants are written
# as everything the service emits writes them.
_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, default=_default, option=_OPTIONS)
