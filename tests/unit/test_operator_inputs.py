"""What operators type into replay and what redrive writes back, without services."""
from datetime import datetime, timezone

import pytest

from consumer.config import ConfigError
from consumer.dlq import DeadLetterRecord, redrive_headers
from consumer.ranges import parse_offsets, parse_time


def test_offsets_are_one_for_every_partition_or_pairs():
    assert parse_offsets(["0"], "--from-offset") == {None: 0}
    assert parse_offsets(["2:1500", "0:7"], "--from-offset") == {2: 1500, 0: 7}


@pytest.mark.parametrize("specs", [["x"], ["1:"], ["-1"], ["1:-5"], ["3", "1:2"]])
def test_bad_offsets_are_usage_errors(specs):
    with pytest.raises(ConfigError, match="--from-offset"):
        parse_offsets(specs, "--from-offset")


def test_instants_need_an_offset():
    assert parse_time("2027-03-01T10:00:00+01:00", "--since") == datetime(2027, 3, 1, 9, tzinfo=timezone.utc)
    assert parse_time("now", "--until").tzinfo is not None
    with pytest.raises(ConfigError, match="--since: instant needs a UTC offset"):
        parse_time("2027-03-01T10:00:00", "--since")


def dead_letter(*headers: tuple[str, bytes]) -> DeadLetterRecord:
    dlq = [("dlq.original.topic", b"scheduling.commands"), ("dlq.original.partition", b"4"), ("dlq.original.offset", b"17"), ("dlq.error.class", b"UnknownAction")]
    return DeadLetterRecord("dlq", 0, 3, 0, b"key", b"{}", (("traceparent", b"00-abc-01"), *headers, *dlq))


def test_a_first_redrive_strips_the_dlq_headers_counts_one_and_names_its_origin():
    assert redrive_headers(dead_letter()) == [
        ("traceparent", b"00-abc-01"),
        ("redrive.count", b"1"),
        ("redrive.origin", b"scheduling.commands:4:17"),
    ]


def test_a_later_redrive_keeps_the_first_origin_and_counts_on():
    again = dead_letter(("redrive.count", b"2"), ("redrive.origin", b"scheduling.commands:1:5"))
    assert again.lineage == "scheduling.commands:1:5"
    assert redrive_headers(again)[-2:] == [("redrive.count", b"3"), ("redrive.origin", b"scheduling.commands:1:5")]


def test_a_dead_letter_without_origin_headers_is_its_own_lineage():
    assert DeadLetterRecord("dlq", 2, 9, 0, None, b"", ()).lineage == "dead letter 2:9"
