"""Partitions applied in parallel on their own connections: order, retries, shared command ids."""
import json
import threading
import uuid
from contextlib import contextmanager
from dataclasses import replace
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import func, make_url, select, text

from consumer import outbox, pipelining
from consumer.database import is_transient, make_engine, set_tenant
from consumer.embedded import wait_until
from consumer.messages import Incoming, Outcome
from consumer.partition_workers import TRANSACTION_COMMANDS, PartitionWorkers
from consumer.processor import ConcurrentDelivery
from consumer.service import make_codec
from handlers import audit
from handlers.errors import Conflict
from handlers.timeutil import iso
from schemas.tables import audit_logs, command_inbox, event_outbox, schedule_entries
from tests.conftest import new_tenant
from tests.harness import failing_updates

pytestmark = pytest.mark.integration


def reschedule(tenant, entry, day, hour, command_id=None):
    start = tenant.at(day, hour)
    return {
        "command_id": command_id or str(uuid.uuid4()),
        "tenant_id": tenant.tenant,
        "action": "scheduling.reschedule",
        "actor": {"user_id": tenant.id("dispatcher")},
        "input": {"entry_id": tenant.id(entry), "window": {"start": iso(start), "end": iso(start + timedelta(hours=1))}},
    }


class Batch:
    """Commands as the poll loop hands them over: decoded, with partition and offset."""

    def __init__(self, settings):
        self.codec = make_codec(settings)
        self.offsets: dict[int, int] = {}

    def item(self, partition, command):
        offset = self.offsets.get(partition, 0)
        self.offsets[partition] = offset + 1
        value = json.dumps(command).encode()
        return Incoming("commands", partition, offset, 0, None, value, (), self.codec.decode_command(value))


@pytest.fixture
def workers(base_settings):
    # A short lock timeout turns a held row lock into a transient failure (SQLSTATE 55P03).
    engine = make_engine(base_settings.database_url, connect_args={"options": "-c lock_timeout=300"})
    made = []

    def make(n=3):
        w = PartitionWorkers(engine, make_codec(base_settings), replace(base_settings, partition_workers=n))
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()
    engine.dispose()


@contextmanager
def row_locked(owner, tenant, entry):
    """The entry's row lock, held by another connection for the block."""
    locked, release = threading.Event(), threading.Event()

    def hold():
        with owner.connect() as conn, conn.begin():
            conn.execute(text("select 1 from schedule_entries where tenant = :t and entry_id = :e for update"), {"t": tenant.tenant, "e": tenant.id(entry)})
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        yield
    finally:
        release.set()
        holder.join(10)


def fails_on_the_lock(w, batch):
    """The batch fails as a whole: a transaction met the held lock (a transient error)."""
    with pytest.raises(Exception) as failure:
        w.process(batch)
    assert "lock" in str(failure.value).lower()


def window_of(owner, tenant, entry):
    with owner.connect() as conn:
        row = conn.execute(
            select(schedule_entries.c.scheduled_start).where(schedule_entries.c.tenant == tenant.tenant, schedule_entries.c.entry_id == tenant.id(entry))
        ).one()
    return row.scheduled_start


def test_each_partition_keeps_its_order_and_results_come_back_in_batch_order(workers, base_settings, tenant, owner):
    b = Batch(base_settings)
    # More moves of one entry than a transaction holds, interleaved with another partition's.
    moves = [b.item(0, reschedule(tenant, "visit", 1, 10 + i % 8)) for i in range(TRANSACTION_COMMANDS + 7)]
    others = [b.item(1, reschedule(tenant, "setup", 2, 8 + i % 9)) for i in range(5)]
    batch = [x for pair in zip(moves, others) for x in pair] + moves[len(others) :]

    results = workers(3).process(batch)

    assert [r.incoming for r in results] == batch
    assert all(r.outcome == Outcome.APPLIED for r in results)
    assert window_of(owner, tenant, "visit") == tenant.at(1, 10 + (len(moves) - 1) % 8)
    assert window_of(owner, tenant, "setup") == tenant.at(2, 12)
    replies = [r.reply["output"] for r in results if r.incoming.partition == 0]
    # Each move saw the window the previous one left.
    assert [o["previous_start"] for o in replies[1:]] == [o["new_start"] for o in replies[:-1]]


def test_a_command_id_in_two_partitions_of_one_batch_is_applied_once(workers, base_settings, tenant, owner):
    b = Batch(base_settings)
    command = reschedule(tenant, "visit", 1, 16)
    batch = [b.item(0, command), b.item(1, command)]

    results = workers(3).process(batch)

    assert sorted(r.outcome for r in results) == sorted([Outcome.APPLIED, Outcome.DUPLICATE])
    with owner.connect() as conn:
        audits = conn.execute(select(func.count()).select_from(audit_logs).where(audit_logs.c.tenant == tenant.tenant)).scalar()
    assert audits == 1


def test_a_write_failing_mid_batch_fails_its_own_command_and_the_others_are_applied(workers, base_settings, tenant, owner):
    # A command's writes are not waited for: they fail at the next command's first read. The batch
    # is then applied again command by command, and only the command that wrote is failed.
    b = Batch(base_settings)
    batch = [b.item(0, reschedule(tenant, "visit", 1, 14)), b.item(0, reschedule(tenant, "setup", 2, 16)), b.item(0, reschedule(tenant, "visit", 1, 15))]
    with failing_updates(owner, f"new.entry_id = '{tenant.id('setup')}'"):
        results = workers(1).process(batch)
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.FAILED, Outcome.APPLIED]
    assert "storage maintenance" in str(results[1].error) and results[1].attempts == 3
    assert window_of(owner, tenant, "visit") == tenant.at(1, 15)
    with owner.connect() as conn:
        audits = conn.execute(select(func.count()).select_from(audit_logs).where(audit_logs.c.tenant == tenant.tenant)).scalar()
    assert audits == 2


def test_commands_the_inbox_already_answers_run_no_handler_and_are_not_counted_as_in_flight(workers, base_settings, tenant, owner):
    """Not dead-lettered however often a consumer died with them, and their unfinished starts are
    forgotten, as is the claim on a batch the inbox answers whole."""
    b = Batch(base_settings)
    first, second = reschedule(tenant, "visit", 1, 14), reschedule(tenant, "setup", 2, 15)
    w = workers(1)
    assert [r.outcome for r in w.process([b.item(0, first), b.item(0, second)])] == [Outcome.APPLIED, Outcome.APPLIED]
    # Resent under later offsets, which a consumer had died with in flight more often than it tolerates.
    resent = [b.item(0, first), b.item(0, second)]
    deaths = base_settings.poison_after_crashes + 2
    group = base_settings.consumer_group
    with owner.begin() as conn:
        for item in resent:
            conn.execute(
                text('insert into delivery_attempts (consumer_group, topic, partition, "offset", attempts) values (:g, :t, :p, :o, :n)'),
                {"g": group, "t": item.topic, "p": item.partition, "o": item.offset, "n": deaths},
            )

    results = w.process(resent)

    assert [r.outcome for r in results] == [Outcome.DUPLICATE, Outcome.DUPLICATE]
    assert [r.reply["output"] for r in results] == [r.reply["output"] for r in w.process([b.item(0, first), b.item(0, second)])]
    with owner.connect() as conn:
        counted = conn.execute(text("select attempts from delivery_attempts where consumer_group = :g"), {"g": group}).scalars().all()
        audits = conn.execute(select(func.count()).select_from(audit_logs).where(audit_logs.c.tenant == tenant.tenant)).scalar()
    assert counted == [] and audits == 2


def test_a_lane_of_several_tenants_writes_each_tenants_rows_under_that_tenant(workers, base_settings, tenant, owner):
    # The last tenant's command is answered from the inbox: the tenant set at the end of the commands
    # is not the last one the transaction set.
    others = [new_tenant(owner), new_tenant(owner)]
    b = Batch(base_settings)
    w = workers(1)
    answered = reschedule(others[1], "visit", 1, 14)
    assert [r.outcome for r in w.process([b.item(0, answered)])] == [Outcome.APPLIED]
    batch = [b.item(0, reschedule(tenant, "visit", 1, 10)), b.item(0, reschedule(others[0], "setup", 2, 11)), b.item(0, answered)]

    results = w.process(batch)

    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.APPLIED, Outcome.DUPLICATE]
    with owner.connect() as conn:
        inboxed = conn.execute(
            select(command_inbox.c.tenant, func.count()).where(command_inbox.c.command_id.in_([i.command.command_id for i in batch])).group_by(command_inbox.c.tenant)
        ).all()
    assert dict(inboxed) == {tenant.tenant: 1, others[0].tenant: 1, others[1].tenant: 1}


def test_a_rejected_command_keeps_the_tenant_for_the_next_commands_of_its_lane(workers, base_settings, tenant, owner):
    # The tenant is set once per run of a tenant's commands, outside their savepoints: rolling
    # back a rejected command must not leave the next one without it, or with another tenant's.
    other = new_tenant(owner)
    b = Batch(base_settings)
    # A partition of its own: another test leaves partition 0's early offsets counted as crashed.
    batch = [
        b.item(4, reschedule(tenant, "no such entry", 1, 9)),
        b.item(4, reschedule(other, "visit", 1, 15)),
        b.item(4, reschedule(tenant, "visit", 1, 14)),
        b.item(4, reschedule(other, "no such entry", 1, 9)),
        b.item(4, reschedule(other, "setup", 2, 16)),
    ]

    results = workers(1).process(batch)

    assert [r.outcome for r in results] == [Outcome.REJECTED, Outcome.APPLIED, Outcome.APPLIED, Outcome.REJECTED, Outcome.APPLIED]
    assert [r.reply["error"]["code"] for r in results if r.outcome == Outcome.REJECTED] == ["NOT_FOUND", "NOT_FOUND"]
    assert (window_of(owner, tenant, "visit"), window_of(owner, other, "visit"), window_of(owner, other, "setup")) == (
        tenant.at(1, 14), other.at(1, 15), other.at(2, 16),
    )  # fmt: skip
    with owner.connect() as conn:
        audited = conn.execute(select(audit_logs.c.tenant, func.count()).group_by(audit_logs.c.tenant).where(audit_logs.c.tenant.in_([tenant.tenant, other.tenant]))).all()
    assert dict(audited) == {tenant.tenant: 1, other.tenant: 2}


def test_a_command_rejected_after_writing_takes_back_only_its_own_writes(workers, base_settings, tenant, owner, monkeypatch, caplog):
    # The first pass has no savepoints: a command that fails after sending a write sends the batch
    # round again, each command in a savepoint of its own, and its rollback undoes only its writes.
    def refused_after_the_update(uow, entry_id, *args, **kwargs):
        if entry_id == tenant.id("setup"):
            raise Conflict("refused after the update was sent")
        return record(uow, entry_id, *args, **kwargs)

    record = audit.record
    monkeypatch.setattr(audit, "record", refused_after_the_update)
    b = Batch(base_settings)
    batch = [b.item(5, reschedule(tenant, "visit", 1, 14)), b.item(5, reschedule(tenant, "setup", 2, 16)), b.item(5, reschedule(tenant, "visit", 1, 15))]
    setup_before = window_of(owner, tenant, "setup")

    with caplog.at_level("INFO", logger="schedule_consumer.processor"):
        results = workers(1).process(batch)

    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.REJECTED, Outcome.APPLIED]
    assert results[1].reply["error"]["code"] == "CONFLICT"
    assert (window_of(owner, tenant, "setup"), window_of(owner, tenant, "visit")) == (setup_before, tenant.at(1, 15))
    assert any("failed after writing" in r.getMessage() and batch[1].command.command_id in r.getMessage() for r in caplog.records)


def test_commands_rejected_before_writing_need_no_savepoints(workers, base_settings, tenant, owner, monkeypatch, caplog):
    savepoints = []
    init = pipelining.Savepoint.__init__
    monkeypatch.setattr(pipelining.Savepoint, "__init__", lambda self, conn: savepoints.append(conn) or init(self, conn))
    b = Batch(base_settings)
    # Day 8 at 9 is tech1's weekly standup: the reschedule's one read finds the conflict, and writes nothing.
    batch = [
        b.item(5, reschedule(tenant, "visit", 1, 11)), b.item(5, reschedule(tenant, "no such entry", 1, 9)),
        b.item(5, reschedule(tenant, "visit", 8, 9)), b.item(5, reschedule(tenant, "visit", 1, 12)),
    ]  # fmt: skip

    with caplog.at_level("INFO", logger="schedule_consumer.processor"):
        results = workers(1).process(batch)

    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.REJECTED, Outcome.REJECTED, Outcome.APPLIED]
    assert [r.reply["error"]["code"] for r in results[1:3]] == ["NOT_FOUND", "CONFLICT"]
    assert window_of(owner, tenant, "visit") == tenant.at(1, 12)
    assert savepoints == [] and not any("again" in r.getMessage() for r in caplog.records)


def test_a_command_another_consumer_records_first_fails_at_commit_and_is_answered_on_retry(base_settings, tenant, owner):
    # The inbox rows travel with the COMMIT, so a duplicate key fails the COMMIT itself. Nothing
    # of the command may stay written or locked, and the same connection must serve the retry.
    engine = make_engine(base_settings.database_url)
    w = PartitionWorkers(engine, make_codec(base_settings), replace(base_settings, partition_workers=1))
    item = Batch(base_settings).item(5, reschedule(tenant, "visit", 1, 14))
    cmd = item.command
    before = window_of(owner, tenant, "visit")
    recorded_elsewhere = {"status": "OK", "output": {"recorded": "by another consumer"}, "error": None}
    try:
        with owner.connect() as other:
            other_tx = other.begin()
            other.execute(command_inbox.insert().values(
                tenant=cmd.tenant_id, command_id=cmd.command_id, action=cmd.action, body_hash=cmd.body_hash,
                status="OK", result=recorded_elsewhere,
            ))  # fmt: skip

            def commit_once_the_consumer_waits():
                # The consumer's inbox insert waits on the other consumer's uncommitted row.
                waiting = text("select count(*) from pg_locks where locktype = 'transactionid' and not granted")
                try:
                    wait_until(lambda: other.execute(waiting).scalar() > 0, 10, "the inbox insert to wait for the other consumer's")
                finally:
                    other_tx.commit()

            committer = threading.Thread(target=commit_once_the_consumer_waits)
            committer.start()
            # On this thread, so the retry below runs on the same processor and connection.
            with pytest.raises(ConcurrentDelivery):
                w.process([item])
            committer.join(10)
        with owner.begin() as conn:
            conn.execute(text("select 1 from schedule_entries where tenant = :t and entry_id = :e for update nowait"), {"t": tenant.tenant, "e": tenant.id("visit")})
        results = w.process([item])
    finally:
        w.close()
        engine.dispose()

    assert [r.outcome for r in results] == [Outcome.DUPLICATE]
    assert results[0].reply["output"] == recorded_elsewhere["output"]
    assert window_of(owner, tenant, "visit") == before


def test_tenants_sharing_a_partition_do_not_wait_for_each_other_and_a_retry_keeps_what_committed(workers, base_settings, tenant, owner):
    other = new_tenant(owner)
    b = Batch(base_settings)
    batch = [b.item(0, reschedule(tenant, "visit", 1, 14)), b.item(0, reschedule(other, "visit", 1, 15))]
    w = workers(2)
    with row_locked(owner, tenant, "visit"):
        fails_on_the_lock(w, batch)
        # The other tenant's command, behind the blocked one in the partition, committed all the same.
        assert window_of(owner, other, "visit") == other.at(1, 15)
        assert window_of(owner, tenant, "visit") != tenant.at(1, 14)

    results = w.process(batch)

    # The other tenant's transaction committed the first time; the retry answers it from memory, not as a duplicate.
    assert [r.outcome for r in results] == [Outcome.APPLIED, Outcome.APPLIED]
    assert window_of(owner, tenant, "visit") == tenant.at(1, 14)
    with owner.connect() as conn:
        audits = conn.execute(select(func.count()).select_from(audit_logs).where(audit_logs.c.tenant.in_([tenant.tenant, other.tenant]))).scalar()
    assert audits == 2


def test_relays_are_woken_once_the_outbox_rows_are_committed(workers, base_settings, tenant, owner):
    b = Batch(base_settings)
    command = reschedule(tenant, "visit", 1, 13)
    url = make_url(base_settings.owner_database_url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as listener:
        listener.execute(f"listen {outbox.CHANNEL}")
        workers(1).process([b.item(0, command)])
        woken = [n.channel for n in listener.notifies(timeout=10, stop_after=1)]
        with owner.connect() as conn:
            pending = conn.execute(
                select(func.count()).select_from(event_outbox).where(event_outbox.c.command_id == command["command_id"], event_outbox.c.published_at.is_(None))
            ).scalar()
    assert woken == [outbox.CHANNEL]
    # The reply and the event, visible to the relay when it wakes.
    assert pending == 2


def test_a_wake_up_that_fails_after_the_commit_leaves_the_batch_applied(workers, base_settings, tenant, owner, monkeypatch, caplog):
    # The wake-up shares the COMMIT's round trip: its error must not be taken for the commit's.
    monkeypatch.setattr(outbox, "WAKE_UP", "select pg_notify('', '')")
    b = Batch(base_settings)
    w = workers(1)
    first, second = reschedule(tenant, "visit", 1, 10), reschedule(tenant, "setup", 2, 11)

    results = [w.process([b.item(0, first)]), w.process([b.item(0, second)])]

    assert [r.outcome for batch in results for r in batch] == [Outcome.APPLIED, Outcome.APPLIED]
    assert [window_of(owner, tenant, e) for e in ("visit", "setup")] == [tenant.at(1, 10), tenant.at(2, 11)]
    assert sum("relays not woken" in r.getMessage() for r in caplog.records) == 2


def test_a_connection_whose_prepared_statements_the_server_lost_retries_the_batch_instead_of_failing_commands(workers, base_settings, tenant):
    b = Batch(base_settings)
    w = workers(1)
    # Message positions no other test uses: the crash guard remembers positions that failed.
    partition = 7
    # Enough commands for psycopg to prepare the handler's statements on this connection.
    warm = [b.item(partition, reschedule(tenant, "visit", 1, 10 + i)) for i in range(8)]
    assert {r.outcome for r in w.process(warm)} == {Outcome.APPLIED}
    driver = w._processor()._connection().connection.driver_connection
    assert driver.execute("select count(*) from pg_prepared_statements").fetchone()[0] > 0
    # The server forgets them behind psycopg's back (a command tag psycopg does not read as a reset).
    driver.execute("do $$ begin execute 'deallocate all'; end $$")
    batch = [b.item(partition, reschedule(tenant, "visit", 1, 14)), b.item(partition, reschedule(tenant, "setup", 2, 16))]
    with pytest.raises(Exception) as failure:
        w.process(batch)
    assert "does not exist" in str(failure.value) and is_transient(failure.value)
    assert [r.outcome for r in w.process(batch)] == [Outcome.APPLIED, Outcome.APPLIED]


def reassign(tenant, entry, to):
    return {
        "command_id": str(uuid.uuid4()),
        "tenant_id": tenant.tenant,
        "action": "scheduling.reassign",
        "actor": {"user_id": tenant.id("dispatcher")},
        "input": {"entry_id": tenant.id(entry), "assigned_user_ids": [tenant.id(to)]},
    }


# Commands that change each of three stored entries of the demo tenant.
CHANGES = {
    "reschedule": lambda tenant, entry: reschedule(tenant, entry, *{"visit": (1, 11), "setup": (2, 15), "dentist": (3, 17)}[entry]),
    "reassign": lambda tenant, entry: reassign(tenant, entry, {"visit": "tech2", "setup": "tech1", "dentist": "tech2"}[entry]),
}


@pytest.mark.parametrize("action", CHANGES)
def test_a_reschedule_or_a_reassign_of_a_stored_entry_waits_for_the_server_once(action, base_settings, owner, monkeypatch):
    """What it reads is asked for together (the entry with its conflicts, or with the new assignees);
    its writes travel with what follows, and so does the batch's own work."""
    round_trips = 0
    wait = psycopg.Connection.wait

    def counted(self, gen, *args, **kwargs):
        # In pipeline mode a statement is only sent; the client waits for answers when it syncs,
        # flushes to read a result, or commits.
        nonlocal round_trips
        round_trips += gen.__qualname__ in ("BasePipeline._sync_gen", "BasePipeline._fetch_gen") or (
            # A commit after the COMMIT was sent finds nothing to do.
            gen.__qualname__ == "BaseConnection._commit_gen" and self.pgconn.transaction_status != psycopg.pq.TransactionStatus.IDLE
        )
        return wait(self, gen, *args, **kwargs)

    monkeypatch.setattr(psycopg.Connection, "wait", counted)
    # A consumer group of its own: the message positions of this module's other tests are in its
    # delivery_attempts rows.
    settings = replace(base_settings, partition_workers=1, consumer_group=f"waits-{uuid.uuid4().hex[:8]}")
    engine = make_engine(settings.database_url)
    w, b, counts = PartitionWorkers(engine, make_codec(settings), settings), Batch(settings), []
    try:
        # The first batch also opens the connection; each measured one has a tenant of its own, so
        # both start from the same caches.
        for changed in (("setup",), ("visit",), ("visit", "setup", "dentist")):
            tenant = new_tenant(owner)
            batch = [b.item(0, CHANGES[action](tenant, entry)) for entry in changed]
            round_trips = 0
            results = w.process(batch)
            counts.append(round_trips)
            assert [r.outcome for r in results] == [Outcome.APPLIED] * len(changed)
    finally:
        w.close()
        engine.dispose()
    # Besides its commands' one each: once at the start (the crash guard's claim and its commit, the
    # inbox, the actor's permissions) and once at the end (the commit and the relays' wake-up).
    assert counts[1:] == [3, 5]


def test_a_transaction_of_one_reschedule_sends_twelve_statements(base_settings, owner, monkeypatch):
    """The crash guard's claim sets its own commit's durability, and its deletion goes with the inbox,
    outbox and audit rows: no statement of their own for either."""
    sent = []
    execute = psycopg.Cursor.execute

    def recorded(self, query, *args, **kwargs):
        sent.append(" ".join(str(query).split()))
        return execute(self, query, *args, **kwargs)

    settings = replace(base_settings, partition_workers=1, consumer_group=f"statements-{uuid.uuid4().hex[:8]}")
    engine = make_engine(settings.database_url)
    w, b = PartitionWorkers(engine, make_codec(settings), settings), Batch(settings)
    try:
        # The first batch opens the connection.
        assert w.process([b.item(0, reschedule(new_tenant(owner), "setup", 2, 15))])[0].outcome == Outcome.APPLIED
        batch = [b.item(0, reschedule(new_tenant(owner), "visit", 1, 11))]
        monkeypatch.setattr(psycopg.Cursor, "execute", recorded)
        assert w.process(batch)[0].outcome == Outcome.APPLIED
    finally:
        w.close()
        engine.dispose()
    heads = [s.split()[0].upper() for s in sent]
    # The claim's transaction, then the work's: tenant, inbox, permissions, the reschedule's read
    # and update, the rows; then the relays' wake-up.
    assert heads == ["BEGIN", "WITH", "COMMIT", "BEGIN", "SELECT", "SELECT", "SELECT", "WITH", "UPDATE", "WITH", "COMMIT", "SELECT"], sent
    assert "set_config('synchronous_commit', 'off', true)" in sent[1]
    assert "DELETE FROM delivery_claims" in sent[9] and "INSERT INTO audit_logs" in sent[9]


def test_each_step_of_a_transaction_starts_with_the_tenant_the_step_before_left_set(workers, base_settings, owner, monkeypatch):
    """Row-level security binds a transaction to one tenant at a time. The inbox and permissions are
    asked tenant by tenant, the commands applied tenant by tenant, then their rows inserted tenant by
    tenant; each step starts with the tenant the step before left set."""
    tenants_set = []

    def counted(conn, tenant):
        tenants_set.append(tenant)
        set_tenant(conn, tenant)

    monkeypatch.setattr("consumer.processor.set_tenant", counted)
    first, second = new_tenant(owner), new_tenant(owner)
    b = Batch(base_settings)
    batch = [b.item(0, reschedule(first, "visit", 1, 11)), b.item(0, reschedule(second, "visit", 1, 12))]
    assert [r.outcome for r in workers(1).process(batch)] == [Outcome.APPLIED] * 2
    # Asked second then first, applied first then second, inserted second then first.
    assert tenants_set == [second.tenant, first.tenant, second.tenant, first.tenant]
