"""Who is acting: actor resolution, msp-scoped permissions, technician eligibility."""
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Select, and_, any_, bindparam, func, select
from sqlalchemy.dialects.postgresql import ARRAY

from handlers.errors import NotFound, PermissionDenied
from handlers.statements import Sent, Statement
from handlers.uow import Actor, BatchCache, UnitOfWork
from schemas.tables import (
    permissions,
    role_permissions,
    roles,
    tenants,
    user_roles,
    users,
    workflow_definition_versions,
    workflow_definitions,
    workflow_runs,
)


def _run_actor_query() -> Select:
    """published_by of the run's own definition version, else the definition's created_by."""
    wr, wd, wdv = workflow_runs, workflow_definitions, workflow_definition_versions
    return (
        select(func.coalesce(wdv.c.published_by, wd.c.created_by))
        .select_from(
            wr.join(wd, and_(wd.c.tenant == wr.c.tenant, wd.c.workflow_id == wr.c.workflow_id))
            .outerjoin(
                wdv,
                and_(
                    wdv.c.tenant == wr.c.tenant,
                    wdv.c.workflow_id == wr.c.workflow_id,
                    wdv.c.version == wr.c.workflow_version,
                ),
            )
        )
        .where(wr.c.tenant == bindparam("tenant"), wr.c.run_id == bindparam("run_id"))
    )


def _permissions_query() -> Select:
    """The msp permissions of an active user of the tenant (no row when there is no such user)."""
    grant = (
        select(func.concat(permissions.c.resource, ":", permissions.c.action))
        .select_from(
            user_roles.join(
                roles,
                and_(roles.c.tenant == user_roles.c.tenant, roles.c.role_id == user_roles.c.role_id),
            )
            .join(
                role_permissions,
                and_(
                    role_permissions.c.tenant == roles.c.tenant,
                    role_permissions.c.role_id == roles.c.role_id,
                ),
            )
            .join(
                permissions,
                and_(
                    permissions.c.tenant == role_permissions.c.tenant,
                    permissions.c.permission_id == role_permissions.c.permission_id,
                ),
            )
        )
        .where(
            user_roles.c.tenant == users.c.tenant,
            user_roles.c.user_id == users.c.user_id,
            roles.c.msp,
            permissions.c.msp,
        )
    )
    return select(func.array(grant.scalar_subquery())).where(
        users.c.tenant == bindparam("tenant"), users.c.user_id == bindparam("user_id"), users.c.is_inactive.is_(False)
    )


def _technicians_query() -> Select:
    """Which of the given users are active internal users of the tenant, and whether each is a technician."""
    is_technician = (
        select(1)
        .select_from(
            user_roles.join(
                roles,
                and_(roles.c.tenant == user_roles.c.tenant, roles.c.role_id == user_roles.c.role_id),
            )
        )
        .where(
            user_roles.c.tenant == users.c.tenant,
            user_roles.c.user_id == users.c.user_id,
            func.lower(roles.c.role_name) == "technician",
        )
        .exists()
    )
    return select(users.c.user_id, is_technician).where(
        users.c.tenant == bindparam("tenant"),
        users.c.user_id == any_(bindparam("user_ids", type_=ARRAY(users.c.user_id.type))),
        users.c.user_type == "internal",
        users.c.is_inactive.is_(False),
    )


_RUN_ACTOR, _PERMISSIONS, _TECHNICIANS = Statement(_run_actor_query()), Statement(_permissions_query()), Statement(_technicians_query())
_TENANT = Statement(select(tenants.c.tenant).where(tenants.c.tenant == bindparam("tenant")))


def _run_actor_user_id(uow: UnitOfWork, run_id: str) -> str | None:
    user_id = _RUN_ACTOR.scalar(uow.conn, {"tenant": uow.ctx.tenant_id, "run_id": run_id})
    return None if user_id is None else str(user_id)


def ask_permissions(conn: Connection, cache: BatchCache, tenant: str, user_id: str) -> None:
    """Send the question for a user's permissions ahead, with the tenant set: it comes back with the
    next statement that is read, and the user's first command reads its answer from the cache."""
    key = (tenant, user_id)
    if key not in cache.permissions_asked:
        cache.permissions_asked[key] = _PERMISSIONS.send(conn, {"tenant": tenant, "user_id": user_id})


def _active_user_permissions(uow: UnitOfWork, user_id: str) -> frozenset[str] | None:
    """The msp permissions of an active user of the tenant; None when there is no such user."""
    asked = uow.cache.permissions_asked.pop((uow.ctx.tenant_id, user_id), None)
    params = {"tenant": uow.ctx.tenant_id, "user_id": user_id}
    rows = asked.rows() if asked is not None else _PERMISSIONS.rows(uow.conn, params)
    return frozenset(rows[0][0]) if rows else None


def resolve_actor(uow: UnitOfWork) -> Actor:
    """The command's actor with their permissions, cached for the batch."""
    ctx = uow.ctx
    key = (ctx.tenant_id, ctx.actor_user_id, ctx.actor_workflow_run_id)
    if key not in uow.cache.actors:
        uow.cache.actors[key] = _resolve(uow)
    actor = uow.cache.actors[key]
    if actor is None:
        if _TENANT.first(uow.conn, {"tenant": ctx.tenant_id}) is None:
            raise NotFound("tenant does not exist", {"tenant_id": ctx.tenant_id})
        if ctx.actor_workflow_run_id is not None:
            raise PermissionDenied(
                "workflow actor could not be resolved",
                {"workflow_run_id": ctx.actor_workflow_run_id},
            )
        raise PermissionDenied(
            "actor is not an active user of the tenant", {"user_id": ctx.actor_user_id}
        )
    return actor


def _resolve(uow: UnitOfWork) -> Actor | None:
    ctx = uow.ctx
    user_id = ctx.actor_user_id
    if ctx.actor_workflow_run_id is not None:
        user_id = _run_actor_user_id(uow, ctx.actor_workflow_run_id)
    if user_id is None:
        return None
    granted = _active_user_permissions(uow, user_id)
    if granted is None:
        return None
    return Actor(user_id=user_id, workflow_run_id=ctx.actor_workflow_run_id, permissions=granted)


def require(actor: Actor, permission: str) -> None:
    if not actor.may(permission):
        resource, action = permission.split(":")
        raise PermissionDenied(
            f"Permission denied: {permission}", {"resource": resource, "action": action}
        )


def ensure_technicians(uow: UnitOfWork, user_ids: Sequence[str]) -> None:
    """Every user must be an active internal user of the tenant holding the Technician role."""
    check_technicians(_eligible(_TECHNICIANS.rows(uow.conn, _technicians_params(uow, user_ids))), user_ids)


def ask_technicians(uow: UnitOfWork, user_ids: Sequence[str]) -> Sent:
    """`ensure_technicians`'s question, sent now: it comes back with the next statement that is read."""
    return _TECHNICIANS.send(uow.conn, _technicians_params(uow, user_ids))


def technicians(asked: Sent) -> dict[str, bool]:
    """The asked users that exist, each with whether it may be scheduled."""
    return _eligible(asked.rows())


def _technicians_params(uow: UnitOfWork, user_ids: Sequence[str]) -> dict[str, Any]:
    return {"tenant": uow.ctx.tenant_id, "user_ids": list(user_ids)}


def _eligible(rows: list[Any]) -> dict[str, bool]:
    return {r[0]: r[1] for r in rows}


def check_technicians(found: dict[str, bool], user_ids: Sequence[str]) -> None:
    missing = [u for u in user_ids if u not in found]
    if missing:
        raise NotFound("One or more users were not found", {"missing_user_ids": missing})
    ineligible = [u for u in user_ids if not found[u]]
    if ineligible:
        raise PermissionDenied(
            "One or more users are not eligible for scheduling (requires Technician role)",
            {"ineligible_user_ids": ineligible},
        )
