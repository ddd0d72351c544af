"""The actions the service answers, and the path every command takes through them."""
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from handlers import actors, find_entry, reschedule
from handlers.uow import UnitOfWork


@dataclass(frozen=True)
class Action:
    name: str
    permission: str
    parse: Callable[[dict[str, Any]], Any]
    handle: Callable[[UnitOfWork, Any], dict[str, Any]]

    @property
    def record_stem(self) -> str:
        """`scheduling.no_show` → `NoShow`: the stem of its Avro input/output records."""
        return "".join(p.capitalize() for p in self.name.split(".", 1)[1].split("_"))


def _action(name: str, module: ModuleType) -> Action:
    return Action(name, module.PERMISSION, module.parse, module.handle)


ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        _action("scheduling.find_entry", find_entry),
        _action("scheduling.reschedule", reschedule),
    )
}


def run(uow: UnitOfWork, action: Action, data: dict[str, Any]) -> dict[str, Any]:
    """Validate, resolve the actor, check the permission, then run the handler."""
    cmd = action.parse(data)
    uow.actor = actors.resolve_actor(uow)
    actors.require(uow.actor, action.permission)
    return action.handle(uow, cmd)
