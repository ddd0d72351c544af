"""One audit_logs row per applied write."""
from typing import Any

from handlers.uow import UnitOfWork


def record(uow: UnitOfWork, entry_id: str, changed_data: dict[str, Any], **details: Any) -> None:
    """The command's audit row, written with the batch's others once the command is applied."""
    ctx = uow.ctx
    run_id = ctx.actor_workflow_run_id
    uow.audit_rows.append(
        {
            "tenant": ctx.tenant_id,
            "audit_id": uow.new_id("audit"),
            "user_id": uow.actor.user_id if uow.actor else None,
            "operation": f"workflow_action:{ctx.action}",
            "table_name": "workflow_runs" if run_id else "schedule_entries",
            "record_id": run_id or entry_id,
            "changed_data": changed_data,
            "details": {
                "action_id": ctx.action,
                "action_version": ctx.action_version,
                "command_id": ctx.command_id,
                "correlation_id": ctx.correlation_id,
                **details,
            },
            "timestamp": ctx.now,
        }
    )
