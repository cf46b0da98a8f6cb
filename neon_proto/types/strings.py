"""Character, byte and identifier-like types: text family, bytea, uuid, bit, macaddr, pg_lsn.

Text arrives in the client encoding, which this project always sets to UTF8.
"""

from __future__ import annotations

import re
import struct
from binascii import a2b_hex
from typing import Any, Callable
from uuid import UUID, SafeUUID

from neon_proto.errors import DataError

__all__ = [
    "load_text",
    "load_bytea",
    "load_uuid",
    "uuid_from_bytes",
    "load_bytea_binary",
    "load_uuid_binary",
    "load_char_binary",
    "load_bit_binary",
    "load_macaddr_binary",
    "load_pg_lsn_binary",
    "load_versioned_text_binary",
    "load_unknown_binary",
    "dump_str",
    "dump_bytes",
    "dump_uuid",
    "bytes_text",
]

BYTEA_OID = 17
UUID_OID = 2950

# --- text loaders -------------------------------------------------------------------------

load_text: Callable[[bytes], str] = bytes.decode

_BYTEA_ESCAPE = re.compile(rb"\\([0-7]{3}|\\)")


def _unescape_bytea_match(m: "re.Match[bytes]") -> bytes:
    code = m.group(1)
    return b"\\" if code == b"\\" else bytes((int(code, 8),))


def load_bytea(data: bytes) -> bytes:
    """bytea text: hex format (``\\x0a0b``) or the older escape format (``a\\012\\\\``)."""
    if data[:2] == b"\\x":
        try:
            return a2b_hex(data[2:])
        except ValueError:
            raise DataError(f"bad bytea hex text: {data[:40]!r}") from None
    if 0x5C not in data:
        return data
    return _BYTEA_ESCAPE.sub(_unescape_bytea_match, data)


def load_uuid(data: bytes) -> UUID:
    """uuid text; the canonical 36-character form skips UUID's own (slower) parser."""
    if len(data) == 36:
        value = _new_uuid(UUID)
        _set_attr(value, "int", int(data.replace(b"-", b""), 16))
        _set_attr(value, "is_safe", _UUID_UNKNOWN_SAFETY)
        return value
    return UUID(data.decode())


_new_uuid = object.__new__
_set_attr = object.__setattr__
_UUID_UNKNOWN_SAFETY = SafeUUID.unknown  # looked up once: Enum member access is slow


# --- binary loaders -----------------------------------------------------------------------


def load_bytea_binary(data: bytes) -> bytes:
    """bytea binary: the bytes themselves."""
    return data


def load_uuid_binary(data: bytes) -> UUID:
    """uuid binary: 16 bytes."""
    if len(data) != 16:
        raise ValueError("uuid binary value must be 16 bytes")
    return uuid_from_bytes(data)


def uuid_from_bytes(data: bytes) -> UUID:
    """A UUID from its 16 bytes (length already checked), skipping UUID's own slower checks."""
    value = _new_uuid(UUID)
    _set_attr(value, "int", int.from_bytes(data, "big"))
    _set_attr(value, "is_safe", _UUID_UNKNOWN_SAFETY)
    return value


def load_char_binary(data: bytes) -> str:
    """"char" binary: one byte; high bytes as the octal escape the text form uses.

    The zero byte is the empty "char" (``''::"char"``), whose text form is empty.
    """
    if data and data[0] >= 0x80:
        return f"\\{data[0]:03o}"
    if data == b"\x00":
        return ""
    return data.decode()


_unpack_int4_from = struct.Struct("!i").unpack_from
_unpack_lsn = struct.Struct("!II").unpack


def load_bit_binary(data: bytes) -> str:
    """bit and varbit binary: int4 bit count then packed bits, as the text form's 0/1 string."""
    nbits = _unpack_int4_from(data)[0]
    if not nbits:
        return ""
    packed = data[4:]
    bits = bin(int.from_bytes(packed, "big"))[2:].zfill(8 * len(packed))
    return bits[:nbits]


def load_macaddr_binary(data: bytes) -> str:
    """macaddr and macaddr8 binary, as the text form ("08:00:2b:01:02:03")."""
    return data.hex(":")


def load_pg_lsn_binary(data: bytes) -> str:
    """pg_lsn binary: uint64, as the text form ("16/B374D848")."""
    hi, lo = _unpack_lsn(data)
    return f"{hi:X}/{lo:X}"


def load_versioned_text_binary(data: bytes) -> str:
    """jsonpath binary: a version byte (1) then the text form."""
    if data[:1] != b"\x01":
        raise DataError(f"unknown binary format version: {data[:1]!r}")
    return data[1:].decode()


def load_unknown_binary(data: bytes) -> str | bytes:
    """A binary cell of a type we know nothing about: str when it is UTF-8, else bytes."""
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


# --- dumpers ------------------------------------------------------------------------------



def dump_str(value: str) -> tuple[int, int, bytes]:
    """str with OID 0 (unknown), so the server infers the type from the query.

    What UTF-8 cannot carry (a lone surrogate such as ``"\\ud800"``) raises DataError, as
    NUL does, rather than UnicodeEncodeError: nothing is sent and the connection stays usable.
    """
    if "\x00" in value:
        raise DataError("PostgreSQL text fields cannot contain NUL (0x00) characters")
    try:
        return (0, 0, value.encode())
    except UnicodeEncodeError as exc:
        raise DataError(
            f"PostgreSQL text cannot hold {value[exc.start : exc.end]!r} at position {exc.start}: "
            f"{exc.reason} in UTF-8"
        ) from exc


def bytes_text(value: Any) -> bytes:
    """The text (hex) form of bytes, bytearray or memoryview."""
    return b"\\x" + bytes(value).hex().encode()


def dump_bytes(value: Any) -> tuple[int, int, bytes]:
    """bytes-like as bytea in binary format: no escaping, no doubling in size."""
    return (BYTEA_OID, 1, value if type(value) is bytes else bytes(value))



def dump_uuid(value: UUID) -> tuple[int, int, bytes]:
    """UUID as uuid."""
    return (UUID_OID, 0, str(value).encode())
