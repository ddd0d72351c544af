"""Row-level security DDL shared by the migration revisions."""
from alembic import op

# NULLIF keeps the predicate sargable and turns an unset tenant into "no rows"
# instead of a cast error.
CURRENT_TENANT = "nullif(current_setting('app.current_tenant', true), '')::uuid"


def enable_tenant_isolation(table: str, extra: str = "") -> None:
    using = f"tenant = {CURRENT_TENANT}" + (f" or {extra}" if extra else "")
    op.execute(f"alter table {table} enable row level security")
    op.execute(f"drop policy if exists tenant_isolation_policy on {table}")
    op.execute(f"create policy tenant_isolation_policy on {table} using ({using}) with check ({using})")


def disable_tenant_isolation(table: str) -> None:
    op.execute(f"drop policy if exists tenant_isolation_policy on {table}")
    op.execute(f"alter table {table} disable row level security")
