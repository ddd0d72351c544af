"""Values read with the uuid logical types dropped, put back in the form the general read gives."""
import io
import uuid

import fastavro
import pytest

from consumer.avro_reads import Unsupported, from_avro, uuid_fixer, without_uuids

UUID = {"type": "string", "logicalType": "uuid"}
A = {"type": "record", "name": "A", "fields": [{"name": "id", "type": UUID}]}
B = {"type": "record", "name": "B", "fields": [{"name": "ids", "type": {"type": "array", "items": UUID}}]}
TOP = {
    "type": "record",
    "name": "Top",
    "fields": [
        {"name": "id", "type": UUID},
        {"name": "maybe", "type": ["null", UUID]},
        {"name": "either", "type": [A, B]},
        {"name": "plain", "type": "string"},
    ],
}
ID = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"


def both_ways(schema, record):
    """(general read, fast read), to call, of a record written with any strings in its uuid fields."""
    named: dict = {}
    parsed = fastavro.parse_schema(schema, named_schemas=named)
    plain = fastavro.parse_schema(without_uuids(schema))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, plain, record)
    options = {"return_record_name": True, "return_record_name_override": True}
    fix = uuid_fixer(parsed, named)
    return (
        lambda: from_avro(fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), parsed, None, **options)),
        lambda: fix(fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), plain, None, **options)),
    )


@pytest.mark.parametrize(
    "record",
    [
        {"id": ID, "maybe": None, "either": ("B", {"ids": []}), "plain": "x"},
        {"id": ID.upper(), "maybe": "{%s}" % ID, "either": ("A", {"id": uuid.UUID(ID).hex}), "plain": "not-a-uuid"},
        {"id": "urn:uuid:" + ID, "maybe": ID, "either": ("B", {"ids": [ID.upper(), ID]}), "plain": ID.upper()},
    ],
)
def test_fast_read_gives_what_the_general_read_gives(record):
    general, fast = (read() for read in both_ways(TOP, record))
    assert fast == general and fast["id"] == ID


def test_a_string_that_is_no_uuid_fails_as_the_general_read_does():
    for read in both_ways(TOP, {"id": ID, "maybe": "bob", "either": ("B", {"ids": []}), "plain": "x"}):
        with pytest.raises(ValueError, match="badly formed hexadecimal UUID string"):
            read()


@pytest.mark.parametrize(
    "field",
    [
        {"type": "map", "values": UUID},
        ["null", "string", A],
        {"type": "fixed", "name": "F", "size": 16, "logicalType": "uuid"},
    ],
)
def test_shapes_the_fast_read_does_not_follow_are_refused(field):
    schema = {"type": "record", "name": "R", "fields": [{"name": "f", "type": field}]}
    named: dict = {}
    with pytest.raises(Unsupported):
        uuid_fixer(fastavro.parse_schema(schema, named_schemas=named), named)


def test_a_schema_without_uuids_needs_nothing_done():
    record = {"plain": "x"}
    assert uuid_fixer({"type": "record", "name": "P", "fields": [{"name": "plain", "type": "string"}]}, {})(record) is record
