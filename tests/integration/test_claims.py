"""The crash guard's records: one claim row per batch, and rows of their own once a claim outlives its process."""
import uuid
from contextlib import contextmanager
from dataclasses import replace

import pytest
from sqlalchemy import text

from consumer import attempts, pipelining
from consumer.database import make_engine
from handlers.statements import insert_together

pytestmark = pytest.mark.integration

TOPIC = "commands"


@pytest.fixture
def group_engine(base_settings):
    engine = make_engine(base_settings.database_url)
    pipelining.install(engine)
    yield replace(base_settings, consumer_group=f"claims-{uuid.uuid4().hex[:8]}").consumer_group, engine
    engine.dispose()


@contextmanager
def pipelined(engine):
    """A connection as a processor holds one."""
    with engine.connect() as conn:
        pipelining.enter(conn)
        try:
            yield conn
        finally:
            pipelining.leave(conn)


def positions(*offsets):
    return [(TOPIC, 0, o) for o in offsets]


def claim(engine, group, batch):
    with pipelined(engine) as conn:
        with pipelining.transaction(conn):
            made = attempts.claim(conn, group, batch)
        return made.earlier()


def finishing(conn, group, done):
    """As the work transaction finishes them: the claims deleted with its inserts (here none)."""
    insert_together(conn, [], attempts.dropping_claims(group, done))
    attempts.finish(conn, group, done)


def finish(engine, group, done):
    with pipelined(engine) as conn, pipelining.transaction(conn):
        finishing(conn, group, done)


def recorded(owner, group):
    with owner.connect() as conn:
        claims = conn.execute(text('select "offset", offsets from delivery_claims where consumer_group = :g order by 1'), {"g": group}).all()
        rows = conn.execute(text('select "offset", attempts from delivery_attempts where consumer_group = :g order by 1'), {"g": group}).all()
    return [(o, list(offs)) for o, offs in claims], [tuple(r) for r in rows]


def test_a_batch_is_claimed_in_one_row_keyed_by_its_first_position(group_engine, owner):
    group, engine = group_engine
    assert claim(engine, group, positions(5, 6, 7)) == {}
    assert recorded(owner, group) == ([(5, [5, 6, 7])], [])


def test_a_claim_left_by_a_process_that_died_moves_to_rows_of_their_own(group_engine, owner):
    group, engine = group_engine
    claim(engine, group, positions(1, 2, 3))
    # The next process meets two of them again in a batch with a new one.
    earlier = claim(engine, group, positions(2, 3, 4))
    assert earlier == {(TOPIC, 0, 2): 1, (TOPIC, 0, 3): 1}
    # Nothing is claimed for the batch; every position of the dead claim is counted once.
    assert recorded(owner, group) == ([], [(1, 1), (2, 1), (3, 1)])
    # Worked alone, the message counts its second start.
    with pipelined(engine) as conn:
        assert attempts.bump(conn, group, (TOPIC, 0, 2)) == 2


def test_claims_of_other_positions_are_left_alone(group_engine, owner):
    group, engine = group_engine
    claim(engine, group, positions(1, 2))
    assert claim(engine, group, positions(3, 4)) == {}
    assert recorded(owner, group) == ([(1, [1, 2]), (3, [3, 4])], [])


def test_finishing_deletes_the_claim_and_a_claim_finished_in_part_keeps_the_rest(group_engine, owner):
    group, engine = group_engine
    in_flight = attempts.InFlight()
    for batch in (positions(1, 2, 3), positions(4, 5)):
        claim(engine, group, batch)
        in_flight.claimed(batch)
    # A retry split the first batch: this transaction finishes 1 and 2, and all of the second.
    done = in_flight.finishing(positions(1, 2, 4, 5))
    assert (done.claims, done.kept, done.own_rows) == (positions(1, 4), positions(3), [])
    finish(engine, group, done)
    in_flight.finished(done)
    assert recorded(owner, group) == ([], [(3, 1)])
    # The rest is now a row of its own, which its own transaction deletes.
    assert in_flight.started == {(TOPIC, 0, 3): None} and in_flight.claims == {}
    done = in_flight.finishing(positions(3))
    assert (done.claims, done.kept, done.own_rows) == ([], [], positions(3))
    finish(engine, group, done)
    in_flight.finished(done)
    assert recorded(owner, group) == ([], []) and (TOPIC, 0, 3) not in in_flight


def test_a_finish_rolled_back_leaves_the_claim_in_place(group_engine, owner):
    group, engine = group_engine
    in_flight = attempts.InFlight()
    claim(engine, group, positions(1, 2))
    in_flight.claimed(positions(1, 2))
    done = in_flight.finishing(positions(1, 2))
    with pipelined(engine) as conn, pytest.raises(RuntimeError):
        with pipelining.transaction(conn):
            finishing(conn, group, done)
            raise RuntimeError("the work transaction failed")
    # Not applied to the record either, as the transaction did not commit.
    assert recorded(owner, group) == ([(1, [1, 2])], []) and (TOPIC, 0, 1) in in_flight


@pytest.mark.parametrize("earlier", [False, True])
def test_a_claim_commits_without_waiting_for_the_wal_flush_whatever_it_finds(group_engine, earlier):
    # It must survive this process dying, not the server. The claim statement sets it itself.
    group, engine = group_engine
    if earlier:
        claim(engine, group, positions(1, 2))
    with pipelined(engine) as conn:
        with pipelining.transaction(conn):
            setting = "select current_setting('synchronous_commit')"
            before = conn.execute(text(setting)).scalar_one()
            made = attempts.claim(conn, group, positions(2, 3))
            after = conn.execute(text(setting)).scalar_one()
        assert made.earlier() == ({(TOPIC, 0, 2): 1} if earlier else {})
    assert (before, after) == ("on", "off")
