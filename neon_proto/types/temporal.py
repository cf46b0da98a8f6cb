"""Dates and times: date, time, timetz, timestamp, timestamptz, interval.

Text loaders assume the server default ``DateStyle=ISO`` (intervals may also come in
``IntervalStyle=iso_8601``; the default is ``postgres``).
Values Python cannot hold (infinity, BC, years after 9999, time 24:00:00) raise DataError,
as psycopg does. Intervals follow psycopg: a month is 30 days and a year 365 days.
"""

from __future__ import annotations

import re
import struct
from datetime import date, datetime, time, timedelta, timezone

from neon_proto.errors import DataError

__all__ = [
    "load_date",
    "load_time",
    "load_timetz",
    "load_timestamp",
    "load_timestamptz",
    "load_interval",
    "load_date_binary",
    "load_time_binary",
    "load_timetz_binary",
    "load_timestamp_binary",
    "load_timestamptz_binary",
    "load_interval_binary",
    "date_from_days",
    "time_from_micros",
    "timestamp_from_micros",
    "timestamptz_from_micros",
    "dump_date",
    "dump_time",
    "dump_datetime",
    "dump_timedelta",
    "time_text",
    "timedelta_text",
]

DATE_OID = 1082
TIME_OID = 1083
TIMETZ_OID = 1266
TIMESTAMP_OID = 1114
TIMESTAMPTZ_OID = 1184
INTERVAL_OID = 1186

_date_fromisoformat = date.fromisoformat
_time_fromisoformat = time.fromisoformat
_datetime_fromisoformat = datetime.fromisoformat


def _too_far(kind: str, s: str) -> DataError | None:
    """The psycopg-style error for a value outside Python's range, if it is one."""
    if s == "-infinity" or s.endswith("BC"):
        return DataError(f"{kind} too small (before year 1): {s!r}")
    if s == "infinity" or (s and len(s.split()[0]) > 10):
        return DataError(f"{kind} too large (after year 10K): {s!r}")
    return None


# --- text loaders -------------------------------------------------------------------------


def load_date(data: bytes) -> date:
    """date text (ISO)."""
    s = data.decode()
    try:
        return _date_fromisoformat(s)
    except ValueError as ex:
        raise _too_far("date", s) or DataError(f"can't parse date {s!r}: {ex}") from None


def load_time(data: bytes) -> time:
    """time text."""
    s = data.decode()
    try:
        return _time_fromisoformat(s)
    except ValueError as ex:
        raise DataError(f"can't parse time {s!r}: {ex}") from None


def load_timetz(data: bytes) -> time:
    """timetz text: the offset ("+05:30", "-03", "+05:45:30") becomes a fixed timezone."""
    s = data.decode()
    try:
        return _time_fromisoformat(s)
    except ValueError as ex:
        raise DataError(f"can't parse timetz {s!r}: {ex}") from None


def load_timestamp(data: bytes) -> datetime:
    """timestamp text (ISO) as a naive datetime."""
    s = data.decode()
    try:
        return _datetime_fromisoformat(s)
    except ValueError as ex:
        raise _too_far("timestamp", s) or DataError(
            f"can't parse timestamp {s!r}: {ex}"
        ) from None


def load_timestamptz(data: bytes) -> datetime:
    """timestamptz text (ISO) as an aware datetime with the fixed offset the server sent."""
    s = data.decode()
    try:
        return _datetime_fromisoformat(s)
    except ValueError as ex:
        raise _too_far("timestamp", s) or DataError(
            f"can't parse timestamptz {s!r}: {ex}"
        ) from None


# Days per unit, as psycopg counts them: a month is 30 days, a year 365.
_INTERVAL_UNITS = {b"year": 365, b"years": 365, b"mon": 30, b"mons": 30, b"day": 1, b"days": 1}
_timedelta = timedelta


def _time_parts(tok: bytes) -> tuple[int, int]:
    """Signed (seconds, microseconds) of "[+-]HH:MM:SS[.ffffff]"; hours may exceed 23."""
    sign = tok[0]
    body = tok[1:] if sign == 0x2D or sign == 0x2B else tok  # "-", "+"
    try:
        t = _time_fromisoformat(body.decode())
        secs = (t.hour * 60 + t.minute) * 60 + t.second
        us = t.microsecond
    except ValueError:
        h, m, s = body.split(b":")
        whole, _, frac = s.partition(b".")
        secs = (int(h) * 60 + int(m)) * 60 + int(whole)
        us = int(frac[:6].ljust(6, b"0")) if frac else 0
    if sign == 0x2D:
        return -secs, -us
    return secs, us


_ISO_INTERVAL = re.compile(
    rb"P(?:([-+]?\d+)Y)?(?:([-+]?\d+)M)?(?:([-+]?\d+)W)?(?:([-+]?\d+)D)?"
    rb"(?:T(?:([-+]?\d+)H)?(?:([-+]?\d+)M)?(?:([-+]?\d+(?:\.\d+)?)S)?)?$"
)


def _load_iso_interval(data: bytes) -> timedelta:
    m = _ISO_INTERVAL.match(data)
    if m is None:
        raise ValueError(data)
    ye, mo, we, da, ho, mi, se = [g or b"0" for g in m.groups()]
    days = 365 * int(ye) + 30 * int(mo) + 7 * int(we) + int(da)
    whole, _, frac = se.partition(b".")
    us = int(frac[:6].ljust(6, b"0")) if frac else 0
    micros = (int(ho) * 3600 + int(mi) * 60 + int(whole)) * 1_000_000
    micros += -us if whole.startswith(b"-") else us
    return _timedelta(days, 0, micros)


def load_interval(data: bytes) -> timedelta:
    """interval text: IntervalStyle postgres ("1 year 2 mons -3 days +04:05:06.5") or iso_8601.

    Months count 30 days and years 365, as psycopg does.
    """
    try:
        if data[:1] == b"P":
            return _load_iso_interval(data)
        if 0x20 not in data:  # no " ": a time alone (int needles are the fast `in`)
            if 0x3A in data:  # ":"
                return _timedelta(0, *_time_parts(data))
            raise ValueError(data)
        days = secs = us = 0
        parts = data.split()
        i = 0
        n = len(parts)
        while i < n:
            tok = parts[i]
            if 0x3A in tok:
                secs, us = _time_parts(tok)
                i += 1
            else:
                days += int(tok) * _INTERVAL_UNITS[parts[i + 1]]
                i += 2
        return _timedelta(days, secs, us)
    except (ValueError, KeyError, IndexError):
        raise DataError(
            f"can't parse interval {data.decode(errors='replace')!r} "
            "(IntervalStyle postgres or iso_8601 expected)"
        ) from None
    except OverflowError as ex:
        raise DataError(f"can't parse interval {data.decode(errors='replace')!r}: {ex}") from None


# --- binary loaders -----------------------------------------------------------------------

_unpack_int4 = struct.Struct("!i").unpack
_unpack_int8 = struct.Struct("!q").unpack
_unpack_timetz = struct.Struct("!qi").unpack
_unpack_interval = struct.Struct("!qii").unpack

_PG_EPOCH_ORDINAL = date(2000, 1, 1).toordinal()
_PG_EPOCH = datetime(2000, 1, 1)
_PG_EPOCH_UTC = datetime(2000, 1, 1, tzinfo=timezone.utc)
_utc = timezone.utc


def load_date_binary(data: bytes) -> date:
    """date binary: int4 days since 2000-01-01."""
    return date_from_days(_unpack_int4(data)[0])


def date_from_days(days: int) -> date:
    """The date ``days`` after 2000-01-01 (a date's binary value, already unpacked)."""
    try:
        return date.fromordinal(days + _PG_EPOCH_ORDINAL)
    except (ValueError, OverflowError):
        if days < 0:
            raise DataError("date too small (before year 1)") from None
        raise DataError("date too large (after year 10K)") from None


def _split_micros(micros: int) -> tuple[int, int, int, int]:
    seconds, us = divmod(micros, 1_000_000)
    minutes, s = divmod(seconds, 60)
    h, m = divmod(minutes, 60)
    return h, m, s, us


def load_time_binary(data: bytes) -> time:
    """time binary: int8 microseconds since midnight."""
    return time_from_micros(_unpack_int8(data)[0])


def time_from_micros(micros: int) -> time:
    """The time of day ``micros`` microseconds after midnight (a time's binary value)."""
    h, m, s, us = _split_micros(micros)
    try:
        return time(h, m, s, us)
    except ValueError:
        raise DataError(f"time not supported by Python: hour={h}") from None


def load_timetz_binary(data: bytes) -> time:
    """timetz binary: int8 microseconds, int4 seconds *west* of UTC."""
    micros, west = _unpack_timetz(data)
    h, m, s, us = _split_micros(micros)
    try:
        return time(h, m, s, us, timezone(timedelta(seconds=-west)))
    except ValueError:
        raise DataError(f"time not supported by Python: hour={h}") from None


def load_timestamp_binary(data: bytes) -> datetime:
    """timestamp binary: int8 microseconds since 2000-01-01."""
    return timestamp_from_micros(_unpack_int8(data)[0])


def timestamp_from_micros(micros: int) -> datetime:
    """The timestamp ``micros`` microseconds after 2000-01-01 (its binary value, unpacked)."""
    try:
        return _PG_EPOCH + _timedelta(0, 0, micros)
    except OverflowError:
        if micros <= 0:
            raise DataError("timestamp too small (before year 1)") from None
        raise DataError("timestamp too large (after year 10K)") from None


def load_timestamptz_binary(data: bytes) -> datetime:
    """timestamptz binary: int8 microseconds since 2000-01-01 UTC, as a UTC datetime."""
    return timestamptz_from_micros(_unpack_int8(data)[0])


def timestamptz_from_micros(micros: int) -> datetime:
    """The timestamptz ``micros`` microseconds after 2000-01-01 UTC (its binary value, unpacked)."""
    try:
        return _PG_EPOCH_UTC + _timedelta(0, 0, micros)
    except OverflowError:
        if micros <= 0:
            raise DataError("timestamp too small (before year 1)") from None
        raise DataError("timestamp too large (after year 10K)") from None


def load_interval_binary(data: bytes) -> timedelta:
    """interval binary: int8 microseconds, int4 days, int4 months (30 days; 12 months 365)."""
    micros, days, months = _unpack_interval(data)
    if months > 0:
        years, months = divmod(months, 12)
        days += 30 * months + 365 * years
    elif months < 0:
        years, months = divmod(-months, 12)
        days -= 30 * months + 365 * years
    try:
        return _timedelta(days, 0, micros)
    except OverflowError as ex:
        raise DataError(f"can't load interval: {ex}") from None


# --- dumpers ------------------------------------------------------------------------------



def dump_date(value: date) -> tuple[int, int, bytes]:
    """date as date."""
    return (DATE_OID, 0, value.isoformat().encode())


def time_text(value: time) -> bytes:
    """The text form of a time, with its offset when aware."""
    if value.tzinfo is not None and value.utcoffset() is None:
        raise DataError(f"cannot calculate the offset of tzinfo {value.tzinfo!r} without a date")
    return value.isoformat().encode()


def dump_time(value: time) -> tuple[int, int, bytes]:
    """time as time, or timetz when it is aware."""
    if value.tzinfo is None:
        return (TIME_OID, 0, value.isoformat().encode())
    return (TIMETZ_OID, 0, time_text(value))



def dump_datetime(value: datetime) -> tuple[int, int, bytes]:
    """datetime as timestamp when naive, timestamptz when aware."""
    if value.tzinfo is None or value.utcoffset() is None:
        return (TIMESTAMP_OID, 0, value.isoformat(" ").encode())
    return (TIMESTAMPTZ_OID, 0, value.isoformat(" ").encode())


def timedelta_text(value: timedelta) -> bytes:
    """The text form of a timedelta, with explicit signs so any IntervalStyle reads it alike."""
    if value.microseconds:
        return b"%+d days %+d.%06d seconds" % (value.days, value.seconds, value.microseconds)
    return b"%+d days %+d seconds" % (value.days, value.seconds)


def dump_timedelta(value: timedelta) -> tuple[int, int, bytes]:
    """timedelta as interval."""
    return (INTERVAL_OID, 0, timedelta_text(value))

