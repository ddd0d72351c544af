"""Log lines as the service configures them, without services."""
import io
import json
import logging
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumer import logs


@pytest.fixture
def configured():
    """The root logger and logging's module switches as the service sets them, restored after."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing)
    yield
    root.handlers[:], level, logging._srcfile, logging.logThreads, logging.logProcesses, logging.logMultiprocessing = saved
    root.setLevel(level)


def _line(fmt: str) -> tuple[logging.LogRecord, str]:
    logs.configure(fmt)
    stream = io.StringIO()
    handler = logging.getLogger().handlers[0]
    handler.setStream(stream)
    records: list[logging.LogRecord] = []
    handler.addFilter(lambda r: records.append(r) or True)
    fields = {"command_id": "c-1", "tenant_id": "t-1", "action": "scheduling.cancel", "partition": 2, "offset": 9, "outcome": "duplicate"}
    logging.getLogger("schedule_consumer.consumer").info("command %s", "duplicate", extra=fields)
    return records[0], stream.getvalue()


def test_a_json_line_carries_the_command_fields_and_skips_the_caller(configured):
    record, text = _line("json")
    line = json.loads(text)
    assert line["message"] == "command duplicate"
    assert {k: line[k] for k in ("command_id", "tenant_id", "action", "partition", "offset", "outcome")} == {
        "command_id": "c-1", "tenant_id": "t-1", "action": "scheduling.cancel", "partition": 2, "offset": 9, "outcome": "duplicate",
    }  # fmt: skip
    # What no format prints is not collected for every line.
    assert record.lineno == 0 and record.thread is None and record.process is None


def test_a_text_line_carries_the_same_fields(configured):
    _, text = _line("text")
    assert "command duplicate" in text
    assert "command_id=c-1 tenant_id=t-1 action=scheduling.cancel partition=2 offset=9 outcome=duplicate" in text


def test_a_json_line_is_stamped_in_utc_to_the_millisecond(configured):
    _, text = _line("json")
    stamp = datetime.fromisoformat(json.loads(text)["ts"])
    assert stamp.tzinfo == timezone.utc and abs((datetime.now(timezone.utc) - stamp).total_seconds()) < 60


@given(st.floats(min_value=0, max_value=4_102_444_800, allow_nan=False))
def test_the_line_stamp_is_the_iso_form_of_the_record_time(created):
    assert logs._utc_millis(created) == datetime.fromtimestamp(created, timezone.utc).isoformat(timespec="milliseconds")
