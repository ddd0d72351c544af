"""Deterministic ids: a replayed command writes the same rows and event ids."""
import uuid

_NAMESPACE = uuid.UUID("6f1c2a4e-52a3-4d0c-9a53-5d1b2f7c9e10")


def derive_id(command_id: str, purpose: str, ordinal: int = 0) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{command_id}:{purpose}:{ordinal}"))
