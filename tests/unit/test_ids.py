"""Derived ids: the same UUIDs uuid.uuid5 makes, so ids already stored and published keep matching."""
import uuid

from hypothesis import given
from hypothesis import strategies as st

from handlers.ids import derive_id

NAMESPACE = uuid.UUID("6f1c2a4e-52a3-4d0c-9a53-5d1b2f7c9e10")


@given(st.uuids().map(str) | st.text(), st.text(), st.integers(min_value=0, max_value=10**6))
def test_derived_ids_are_uuid5_of_command_purpose_and_ordinal(command_id, purpose, ordinal):
    assert derive_id(command_id, purpose, ordinal) == str(uuid.uuid5(NAMESPACE, f"{command_id}:{purpose}:{ordinal}"))


def test_a_derived_id_stays_what_it_was():
    # Ids in stored rows and published events were made this way: a change of formula would break replays.
    assert derive_id("00000000-0000-0000-0000-000000000001", "event", 0) == "4a1c2258-3a9e-54ce-8b73-68e969c1679d"
