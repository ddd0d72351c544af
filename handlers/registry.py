"""The actions the service answers, and the path every command takes through them."""
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from handlers import (
    actors,
    assign_user,
    cancel,
    complete,
    create_entry,
    find_entry,
    no_show,
    reassign,
    reschedule,
    search_entries,
)
from handlers.uow import UnitOfWork


@dataclass(frozen=True)
class Action:
    name: str
    permission: str
    parse: Callable[[dict[str, Any]], Any]
    handle: Callable[[UnitOfWork, Any], dict[str, Any]]


def _action(module: ModuleType) -> Action:
    return Action(f"scheduling.{module.__name__.rsplit('.', 1)[1]}", module.PERMISSION, module.parse, module.handle)


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in map(_action, (assign_user, create_entry, find_entry, search_entries, reschedule, reassign, cancel, complete, no_show))
}


def run(uow: UnitOfWork, action: Action, data: dict[str, Any]) -> dict[str, Any]:
    """Validate, resolve the actor, check the permission, then run the handler."""
    cmd = action.parse(data)
    uow.actor = actors.resolve_actor(uow)
    actors.require(uow.actor, action.permission)
    return action.handle(uow, cmd)
