"""The benchmark's statements per command by kind, as pg_stat_statements spells them."""
import pytest

from bench.dbstats import _kind


@pytest.mark.parametrize(
    "query, kind",
    [
        ("INSERT INTO audit_logs (tenant) VALUES ($1::UUID)", "insert audit_logs"),
        ("UPDATE schedule_entries SET notes = $1", "update schedule_entries"),
        ("SELECT command_inbox.command_id FROM command_inbox WHERE tenant = $1", "select command_inbox"),
        (
            "WITH command_inbox_rows AS \n(INSERT INTO command_inbox (tenant) VALUES ($1::UUID)), \nevent_outbox_rows AS \n"
            "(INSERT INTO event_outbox (tenant) SELECT $1::UUID FROM unnest($2::TEXT[]) AS anon_1(kind))\n"
            " INSERT INTO audit_logs (tenant) VALUES ($1::UUID)",
            "insert command_inbox + event_outbox + audit_logs",
        ),
        (
            "WITH claims_finished AS \n(DELETE FROM delivery_claims USING unnest($2::TEXT[]) AS anon_1(topic) WHERE true)\n"
            " INSERT INTO audit_logs (tenant) VALUES ($1::UUID)",
            "insert audit_logs, delete delivery_claims",
        ),
        ("WITH q AS (SELECT 1) SELECT * FROM q", "select"),
        ("COMMIT", "commit"),
    ],
)
def test_a_statement_is_counted_under_what_it_does(query, kind):
    assert _kind(query) == kind
