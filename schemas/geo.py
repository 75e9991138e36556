"""Distances on the Earth for health and arrivals: how far a point is from a parcel's way.

Spherical trigonometry (the haversine family), not geopy's geodesic: within 0.5% of it at
these distances (tests/unit/test_geo.py checks against it), and about a hundred times
cheaper (the design notes measured 23k geodesics a second against 3M haversines), which
matters when every order on the line haul is assessed against every traffic incident.
"""

from __future__ import annotations

import math

EARTH_KM = 6371.0088  # mean radius
Point = tuple[float, float]  # latitude, longitude in degrees


def km_between(a: Point, b: Point) -> float:
    """The great-circle distance."""
    return _angle_between(a, b) * EARTH_KM


def km_from_way(point: Point, start: Point, end: Point) -> float | None:
    """The distance from a point to the great-circle way from start to end (to its nearest point: the end, if the
    point lies beyond it); None if the point lies behind the start, where what goes that way has been already."""
    from_start, way = _angle_between(start, point), _angle_between(start, end)
    if from_start == 0.0 or way == 0.0:
        return from_start * EARTH_KM
    turn = _bearing(start, point) - _bearing(start, end)
    if math.cos(turn) < 0:
        return None
    across = math.asin(max(-1.0, min(1.0, math.sin(from_start) * math.sin(turn))))
    along = math.acos(max(-1.0, min(1.0, math.cos(from_start) / math.cos(across))))
    return km_between(point, end) if along > way else abs(across) * EARTH_KM


def _angle_between(a: Point, b: Point) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * math.asin(min(1.0, math.sqrt(h)))


def _bearing(a: Point, b: Point) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.atan2(y, x)
