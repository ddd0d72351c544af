"""JSON values checked against the schemas: the exact paths and messages callers are answered with."""
import uuid
from datetime import datetime, timezone

import pytest

from consumer.avro_schemas import SchemaSet
from consumer.avro_values import FieldError, converter, parse_instant

SCHEMAS = SchemaSet()
COMMAND = SCHEMAS.command
ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


def create_input(**changes):
    value = {"assigned_user_ids": [ID], "title": "Visit", "window": {"start": "2027-01-05T10:00:00+01:00", "end": "2027-01-05T11:00:00Z"}}
    return {**value, **changes}


def convert_create(value):
    return COMMAND.converter("psa.scheduling.CreateEntryInput")(value, "input")


def test_a_valid_value_gets_defaults_utc_instants_and_canonical_uuids():
    out = convert_create(create_input(assigned_user_ids=[ID.upper(), "{%s}" % ID, ID.replace("-", "")]))
    assert out["assigned_user_ids"] == [ID, ID, ID]
    assert out["window"] == {"start": datetime(2027, 1, 5, 9, tzinfo=timezone.utc), "end": datetime(2027, 1, 5, 11, tzinfo=timezone.utc), "timezone": None}
    assert (out["link"], out["is_private"], out["recurrence"], out["conflict_mode"]) == (None, False, None, "fail")


@pytest.mark.parametrize(
    ("value", "path", "reason"),
    [
        ("nope", "input", "must be an object"),
        (create_input(colour="red", bogus=1), "input.bogus", "unknown field"),
        ({"title": "x"}, "input.assigned_user_ids", "is required"),
        (create_input(assigned_user_ids="a"), "input.assigned_user_ids", "must be an array"),
        (create_input(assigned_user_ids=[ID, "bob"]), "input.assigned_user_ids[1]", "not a UUID: 'bob'"),
        (create_input(assigned_user_ids=[7]), "input.assigned_user_ids[0]", "must be a UUID string"),
        (create_input(title=None), "input.title", "must be of type string; got NoneType"),
        (create_input(title=3), "input.title", "must be of type string; got int"),
        (create_input(is_private=1), "input.is_private", "must be of type boolean; got int"),
        (create_input(window={"start": 5, "end": "x"}), "input.window.start", "must be an ISO-8601 instant string"),
        (create_input(window={"start": "soon", "end": "x"}), "input.window.start", "not an ISO-8601 instant: 'soon'"),
        (create_input(window={"start": "2027-01-05T10:00:00", "end": "x"}), "input.window.start", "instant needs a UTC offset: '2027-01-05T10:00:00'"),
        (create_input(conflict_mode="maybe"), "input.conflict_mode", "must be one of fail, shift, override; got 'maybe'"),
        (create_input(link={"type": "ticket"}), "input.link.id", "is required"),
        (create_input(recurrence={"frequency": "daily", "interval": True}), "input.recurrence.interval", "must be of type int; got bool"),
        (create_input(recurrence={"frequency": "daily", "daysOfWeek": [1, "2"]}), "input.recurrence.daysOfWeek[1]", "must be of type int; got str"),
    ],
)
def test_errors_name_the_path_and_the_reason(value, path, reason):
    with pytest.raises(FieldError) as e:
        convert_create(value)
    assert (e.value.path, e.value.reason, str(e.value)) == (path, reason, f"{path}: {reason}")


NAMED: dict = {}
UNION = [
    "null",
    {"type": "record", "name": "A", "fields": [{"name": "a", "type": "int"}]},
    {"type": "record", "name": "B", "fields": [{"name": "b", "type": "string"}]},
]


@pytest.mark.parametrize(
    ("schema", "value", "result"),
    [
        (UNION, None, None),
        (UNION, {"b": "x"}, {"b": "x"}),
        (UNION, {"c": 1}, FieldError("v", "matches none of A | B")),
        (["string", "int"], 1.5, FieldError("v", "matches none of string | int")),
        (["string"], None, FieldError("v", "is required")),
        (["null", "int"], "1", FieldError("v", "must be of type int; got str")),
        ("null", 0, FieldError("v", "must be null")),
        ("double", 1, 1),
        ({"type": "map", "values": "int"}, {}, FieldError("v", "unsupported schema type map")),
    ],
)
def test_unions_and_other_types(schema, value, result):
    convert = converter(schema, NAMED)
    if isinstance(result, FieldError):
        with pytest.raises(FieldError) as e:
            convert(value, "v")
        assert str(e.value) == str(result)
    else:
        assert convert(value, "v") == result


def test_types_without_a_json_form_fail_only_when_a_value_reaches_them():
    convert = converter(["null", "bytes"], NAMED)
    assert convert(None, "v") is None
    with pytest.raises(KeyError):
        convert(b"x", "v")


def test_a_record_that_contains_itself_converts():
    node = {"type": "record", "name": "Node", "fields": [{"name": "next", "type": ["null", "Node"], "default": None}]}
    assert converter(node, {"Node": node})({"next": {"next": {}}}, "n") == {"next": {"next": {"next": None}}}
    with pytest.raises(FieldError, match=r"^n\.next\.next: must be an object$"):
        converter(node, {"Node": node})({"next": {"next": 5}}, "n")


def test_defaults_are_fresh_values_for_every_conversion():
    first, second = convert_create(create_input()), convert_create(create_input())
    assert first == second and first is not second and first["window"] is not second["window"]


def test_converters_are_compiled_once_per_record():
    assert COMMAND.converter("psa.scheduling.Window") is COMMAND.converter("psa.scheduling.Window")
    assert COMMAND.converter(COMMAND.name, ("input",)) is not COMMAND.converter(COMMAND.name)


def test_parse_instant_names_the_given_path():
    assert parse_instant("2027-01-05T10:00:00.250+02:00", "--from") == datetime(2027, 1, 5, 8, 0, 0, 250000, tzinfo=timezone.utc)
    with pytest.raises(FieldError, match=r"^--from: instant needs a UTC offset"):
        parse_instant("2027-01-05", "--from")


def test_uuid_strings_come_out_canonical():
    assert COMMAND.converter("psa.scheduling.Link")({"type": "ticket", "id": str(uuid.UUID(ID)).upper()}, "l")["id"] == ID
