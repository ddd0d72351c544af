"""Deterministic ids: a replayed command writes the same rows and event ids."""
import hashlib
import uuid

_NAMESPACE = uuid.UUID("6f1c2a4e-52a3-4d0c-9a53-5d1b2f7c9e10").bytes


def derive_id(command_id: str, purpose: str, ordinal: int = 0) -> str:
    """The name-based (version 5) UUID of the command id, purpose and ordinal, as uuid.uuid5 makes it:
    built from the digest's bytes, without the UUID object, which cost more than the hash (events
    and audit rows take several per command)."""
    digest = bytearray(hashlib.sha1(_NAMESPACE + f"{command_id}:{purpose}:{ordinal}".encode()).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50
    digest[8] = (digest[8] & 0x3F) | 0x80
    h = digest.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
