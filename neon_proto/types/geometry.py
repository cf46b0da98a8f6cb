"""Geometric types: point, line, lseg, box, path, polygon, circle, as small frozen values."""

from __future__ import annotations

import struct
from typing import Any, Callable, Iterable

import attrs

from neon_proto.errors import DataError
from neon_proto.types.numeric import float_text

__all__ = [
    "Point",
    "Line",
    "LineSegment",
    "Box",
    "Path",
    "Polygon",
    "Circle",
    "GEOMETRY_TEXT_LOADERS",
    "GEOMETRY_BINARY_LOADERS",
    "GEOMETRY_DUMPERS",
]


@attrs.frozen
class Point:
    """A point (x, y)."""

    x: float = attrs.field(converter=float)
    y: float = attrs.field(converter=float)


@attrs.frozen
class Line:
    """An infinite line A·x + B·y + C = 0."""

    a: float = attrs.field(converter=float)
    b: float = attrs.field(converter=float)
    c: float = attrs.field(converter=float)


@attrs.frozen
class LineSegment:
    """A line segment between two points (Postgres lseg)."""

    start: Point
    end: Point


@attrs.frozen
class Box:
    """A box by two opposite corners; Postgres stores the upper-right one first."""

    high: Point
    low: Point


def _point_tuple(points: Iterable[Point]) -> tuple[Point, ...]:
    return tuple(points)


@attrs.frozen
class Path:
    """A path: open ("[...]") or closed ("(...)")."""

    points: tuple[Point, ...] = attrs.field(converter=_point_tuple)
    closed: bool = False


@attrs.frozen
class Polygon:
    """A polygon by its vertices."""

    points: tuple[Point, ...] = attrs.field(converter=_point_tuple)


@attrs.frozen
class Circle:
    """A circle by center and radius."""

    center: Point
    radius: float = attrs.field(converter=float)


# --- text ---------------------------------------------------------------------------------

_STRIP = b"()[]{}<> "


def _floats(data: bytes) -> list[float]:
    try:
        return [float(x) for x in data.translate(None, _STRIP).split(b",")]
    except ValueError:
        raise DataError(f"can't parse geometric value {data.decode(errors='replace')!r}") from None


def _points(f: list[float]) -> tuple[Point, ...]:
    return tuple([Point(f[i], f[i + 1]) for i in range(0, len(f), 2)])


def load_point(data: bytes) -> Point:
    """point text: "(x,y)"."""
    x, y = _floats(data)
    return Point(x, y)


def load_line(data: bytes) -> Line:
    """line text: "{A,B,C}"."""
    a, b, c = _floats(data)
    return Line(a, b, c)


def load_lseg(data: bytes) -> LineSegment:
    """lseg text: "[(x1,y1),(x2,y2)]"."""
    x1, y1, x2, y2 = _floats(data)
    return LineSegment(Point(x1, y1), Point(x2, y2))


def load_box(data: bytes) -> Box:
    """box text: "(x1,y1),(x2,y2)", upper-right corner first."""
    x1, y1, x2, y2 = _floats(data)
    return Box(Point(x1, y1), Point(x2, y2))


def load_path(data: bytes) -> Path:
    """path text: "[(x1,y1),...]" open or "((x1,y1),...)" closed."""
    return Path(_points(_floats(data)), data[:1] == b"(")


def load_polygon(data: bytes) -> Polygon:
    """polygon text: "((x1,y1),...)"."""
    return Polygon(_points(_floats(data)))


def load_circle(data: bytes) -> Circle:
    """circle text: "<(x,y),r>"."""
    x, y, r = _floats(data)
    return Circle(Point(x, y), r)


# --- binary -------------------------------------------------------------------------------

_unpack_2d = struct.Struct("!2d").unpack
_unpack_3d = struct.Struct("!3d").unpack
_unpack_4d = struct.Struct("!4d").unpack
_unpack_int4_from = struct.Struct("!i").unpack_from


def load_point_binary(data: bytes) -> Point:
    """point binary: two float8."""
    return Point(*_unpack_2d(data))


def load_line_binary(data: bytes) -> Line:
    """line binary: three float8."""
    return Line(*_unpack_3d(data))


def load_lseg_binary(data: bytes) -> LineSegment:
    """lseg binary: four float8."""
    x1, y1, x2, y2 = _unpack_4d(data)
    return LineSegment(Point(x1, y1), Point(x2, y2))


def load_box_binary(data: bytes) -> Box:
    """box binary: four float8, high corner first."""
    x1, y1, x2, y2 = _unpack_4d(data)
    return Box(Point(x1, y1), Point(x2, y2))


def _points_binary(data: bytes, pos: int) -> tuple[Point, ...]:
    n = _unpack_int4_from(data, pos)[0]
    f = struct.unpack_from(f"!{2 * n}d", data, pos + 4)
    return tuple([Point(f[i], f[i + 1]) for i in range(0, 2 * n, 2)])


def load_path_binary(data: bytes) -> Path:
    """path binary: closed flag byte, int4 count, points."""
    return Path(_points_binary(data, 1), data[0] != 0)


def load_polygon_binary(data: bytes) -> Polygon:
    """polygon binary: int4 count, points."""
    return Polygon(_points_binary(data, 0))


def load_circle_binary(data: bytes) -> Circle:
    """circle binary: center x, y and radius as float8."""
    x, y, r = _unpack_3d(data)
    return Circle(Point(x, y), r)


# --- dumpers ------------------------------------------------------------------------------


def _pt(p: Point) -> bytes:
    return b"(%s,%s)" % (float_text(p.x), float_text(p.y))


def dump_point(value: Point) -> tuple[int, int, bytes]:
    """Point as point."""
    return (600, 0, _pt(value))


def dump_line(value: Line) -> tuple[int, int, bytes]:
    """Line as line."""
    return (628, 0, b"{%s,%s,%s}" % (float_text(value.a), float_text(value.b), float_text(value.c)))


def dump_lseg(value: LineSegment) -> tuple[int, int, bytes]:
    """LineSegment as lseg."""
    return (601, 0, b"[%s,%s]" % (_pt(value.start), _pt(value.end)))


def dump_box(value: Box) -> tuple[int, int, bytes]:
    """Box as box."""
    return (603, 0, b"%s,%s" % (_pt(value.high), _pt(value.low)))


def dump_path(value: Path) -> tuple[int, int, bytes]:
    """Path as path."""
    body = b",".join([_pt(p) for p in value.points])
    return (602, 0, b"(%s)" % body if value.closed else b"[%s]" % body)


def dump_polygon(value: Polygon) -> tuple[int, int, bytes]:
    """Polygon as polygon."""
    return (604, 0, b"(%s)" % b",".join([_pt(p) for p in value.points]))


def dump_circle(value: Circle) -> tuple[int, int, bytes]:
    """Circle as circle."""
    return (718, 0, b"<%s,%s>" % (_pt(value.center), float_text(value.radius)))


GEOMETRY_TEXT_LOADERS: dict[int, Callable[[bytes], Any]] = {
    600: load_point,
    628: load_line,
    601: load_lseg,
    603: load_box,
    602: load_path,
    604: load_polygon,
    718: load_circle,
}
GEOMETRY_BINARY_LOADERS: dict[int, Callable[[bytes], Any]] = {
    600: load_point_binary,
    628: load_line_binary,
    601: load_lseg_binary,
    603: load_box_binary,
    602: load_path_binary,
    604: load_polygon_binary,
    718: load_circle_binary,
}
GEOMETRY_DUMPERS: dict[type, Callable[[Any], tuple[int, int, bytes]]] = {
    Point: dump_point,
    Line: dump_line,
    LineSegment: dump_lseg,
    Box: dump_box,
    Path: dump_path,
    Polygon: dump_polygon,
    Circle: dump_circle,
}
