"""Booleans and numbers: bool, int2/4/8, oid, float4/8, numeric, money.

Loaders are plain functions or builtins (``int`` and ``float`` accept bytes), since they run
once per cell. Dumpers return ``(oid, format, data)`` in text format.
"""

from __future__ import annotations

import re
import struct
from decimal import Decimal, InvalidOperation
from typing import Callable

from neon_proto.errors import DataError

__all__ = [
    "load_bool",
    "load_int",
    "load_float",
    "load_numeric",
    "load_money",
    "load_bool_binary",
    "load_int2_binary",
    "load_int4_binary",
    "load_int8_binary",
    "load_oid_binary",
    "load_float4_binary",
    "load_float8_binary",
    "load_numeric_binary",
    "load_money_binary",
    "dump_bool",
    "dump_int",
    "dump_int_narrow",
    "dump_float",
    "dump_decimal",
    "float_text",
    "decimal_text",
]

BOOL_OID = 16
INT8_OID = 20
INT4_OID = 23
FLOAT8_OID = 701
NUMERIC_OID = 1700

_INT4_MIN = -(2**31)
_INT4_MAX = 2**31 - 1
_INT8_MIN = -(2**63)
_INT8_MAX = 2**63 - 1

# --- text loaders -------------------------------------------------------------------------

load_bool: Callable[[bytes], bool] = b"t".__eq__
load_int: Callable[[bytes], int] = int
load_float: Callable[[bytes], float] = float


def load_numeric(data: bytes) -> Decimal:
    """numeric text, including NaN and ±Infinity."""
    return Decimal(data.decode())


_MONEY_NOT_DIGITS = re.compile(r"[^\d.,]")


def load_money(data: bytes) -> Decimal:
    """money text as Decimal: "$1,234.56", "-$1.00", "($1.00)", "1.234,56 €".

    The server formats money with its ``lc_monetary`` locale. When both "." and "," appear
    the last one is the decimal separator; a lone separator followed by exactly three
    digits is taken as grouping ("￥1,235").
    """
    s = data.decode()
    digits = _MONEY_NOT_DIGITS.sub("", s)
    cut = max(digits.rfind("."), digits.rfind(","))
    if cut >= 0:
        sep = digits[cut]
        both = ("," if sep == "." else ".") in digits
        if both or (digits.count(sep) == 1 and len(digits) - cut - 1 != 3):
            digits = digits[:cut].replace(".", "").replace(",", "") + "." + digits[cut + 1 :]
        else:
            digits = digits.replace(".", "").replace(",", "")
    try:
        value = Decimal(digits)
    except InvalidOperation:
        raise DataError(f"can't parse money {s!r}") from None
    return -value if ("-" in s or "(" in s) else value


# --- binary loaders -----------------------------------------------------------------------

_unpack_int2 = struct.Struct("!h").unpack
_unpack_int4 = struct.Struct("!i").unpack
_unpack_int8 = struct.Struct("!q").unpack
_unpack_uint4 = struct.Struct("!I").unpack
_unpack_float4 = struct.Struct("!f").unpack
_unpack_float8 = struct.Struct("!d").unpack
_unpack_numeric_head = struct.Struct("!HhHH").unpack_from

load_bool_binary: Callable[[bytes], bool] = b"\x01".__eq__


def load_int2_binary(data: bytes) -> int:
    """int2 binary: big-endian signed 16 bits."""
    return _unpack_int2(data)[0]  # type: ignore[no-any-return]


def load_int4_binary(data: bytes) -> int:
    """int4 binary: big-endian signed 32 bits."""
    return _unpack_int4(data)[0]  # type: ignore[no-any-return]


def load_int8_binary(data: bytes) -> int:
    """int8 binary: big-endian signed 64 bits."""
    return _unpack_int8(data)[0]  # type: ignore[no-any-return]


def load_oid_binary(data: bytes) -> int:
    """oid (and xid, reg*) binary: big-endian unsigned 32 bits."""
    return _unpack_uint4(data)[0]  # type: ignore[no-any-return]


def load_float4_binary(data: bytes) -> float:
    """float4 binary: IEEE 754 single."""
    return _unpack_float4(data)[0]  # type: ignore[no-any-return]


def load_float8_binary(data: bytes) -> float:
    """float8 binary: IEEE 754 double."""
    return _unpack_float8(data)[0]  # type: ignore[no-any-return]


_NUMERIC_NEG = 0x4000
_NUMERIC_SPECIAL = {
    0xC000: Decimal("NaN"),
    0xD000: Decimal("Infinity"),
    0xF000: Decimal("-Infinity"),
}
_DIGITS4 = tuple(f"{i:04d}" for i in range(10000))


def load_numeric_binary(data: bytes) -> Decimal:
    """numeric binary: base-10000 digits with a weight and a display scale.

    The result has exactly ``dscale`` decimals, like the text form ("1.50" stays 1.50).
    Digits are joined as text, not through ``int``, so any precision loads exactly.
    """
    ndigits, weight, sign, dscale = _unpack_numeric_head(data)
    if sign != 0 and sign != _NUMERIC_NEG:
        try:
            return _NUMERIC_SPECIAL[sign]
        except KeyError:
            raise DataError(f"bad numeric sign: 0x{sign:X}") from None
    if not ndigits:
        return Decimal(f"0E-{dscale}")
    digits = struct.unpack_from(f"!{ndigits}H", data, 8)
    text = "".join([_DIGITS4[d] for d in digits])
    # The digits stand for text * 10**(4 * (weight + 1 - ndigits)); express it as
    # coefficient * 10**-dscale by padding or dropping (zero) trailing digits.
    shift = 4 * (weight + 1 - ndigits) + dscale
    if shift > 0:
        text += "0" * shift
    elif shift < 0:
        text = text[:shift] or "0"
    return Decimal(f"{'-' if sign else ''}{text}E-{dscale}")


def load_money_binary(data: bytes) -> Decimal:
    """money binary: int8 count of cents (assumes two fractional digits, as lc_monetary=C)."""
    return Decimal(_unpack_int8(data)[0]).scaleb(-2)


# --- dumpers ------------------------------------------------------------------------------



def dump_bool(value: bool) -> tuple[int, int, bytes]:
    """bool as bool."""
    return (BOOL_OID, 0, b"t" if value else b"f")



def dump_int(value: int) -> tuple[int, int, bytes]:
    """int as int8 when it fits in 64 bits, else numeric."""
    if _INT8_MIN <= value <= _INT8_MAX:
        return (INT8_OID, 0, b"%d" % value)
    return (NUMERIC_OID, 0, b"%d" % value)


def dump_int_narrow(value: int) -> tuple[int, int, bytes]:
    """int as int4 when it fits in 32 bits, else int8, else numeric.

    Functions taking integer (substr, left, repeat, make_date) do not accept a bigint
    argument, but do accept int4; int2 is not used, since int2 * int2 overflows easily.
    """
    if _INT4_MIN <= value <= _INT4_MAX:
        return (INT4_OID, 0, b"%d" % value)
    if _INT8_MIN <= value <= _INT8_MAX:
        return (INT8_OID, 0, b"%d" % value)
    return (NUMERIC_OID, 0, b"%d" % value)


_FLOAT_SPECIAL = {"inf": b"Infinity", "-inf": b"-Infinity", "nan": b"NaN"}
_float_repr = float.__repr__


def float_text(value: float) -> bytes:
    """The text form of a float: shortest round-trip repr, Postgres spellings of NaN and infinities."""
    s = _float_repr(value)
    if s[-1] in "fn":  # "inf", "-inf", "nan"; every other repr ends with a digit
        return _FLOAT_SPECIAL[s]
    return s.encode()


def dump_float(value: float) -> tuple[int, int, bytes]:
    """float as float8."""
    return (FLOAT8_OID, 0, float_text(value))


_DECIMAL_SPECIAL = {"NaN": b"NaN", "sNaN": b"NaN", "-NaN": b"NaN", "-sNaN": b"NaN"}


def decimal_text(value: Decimal) -> bytes:
    """The text form of a Decimal; signalling and negative NaNs become NaN."""
    s = str(value)
    special = _DECIMAL_SPECIAL.get(s)
    return special if special is not None else s.encode()


def dump_decimal(value: Decimal) -> tuple[int, int, bytes]:
    """Decimal as numeric."""
    return (NUMERIC_OID, 0, decimal_text(value))
