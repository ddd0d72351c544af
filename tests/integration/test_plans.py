"""The service's connections run a prepared statement on one plan, made when it is prepared."""
import pytest

from consumer.database import make_engine, set_tenant
from handlers.conflicts import _BUSY

pytestmark = pytest.mark.integration


def test_the_conflict_check_is_not_planned_again_for_every_execution(base_settings, tenant):
    engine = make_engine(base_settings.database_url)
    try:
        with engine.connect() as conn:
            set_tenant(conn, tenant.tenant)
            for day in range(12):
                params = {
                    "tenant": tenant.tenant, "user_ids": [tenant.id("tech1")],
                    "start": tenant.at(day, 9), "end": tenant.at(day, 10), "series_id": tenant.id("visit"),
                }  # fmt: skip
                _BUSY[True].rows(conn, params)
            generic, custom = conn.exec_driver_sql(
                "select generic_plans, custom_plans from pg_prepared_statements where strpos(statement, 'busy_user_id') > 0"
            ).one()
    finally:
        engine.dispose()
    # psycopg prepares a statement on its fifth execution; the rest run the plan made then.
    assert (generic, custom) == (7, 0)
