"""Distances from a parcel's way, checked against geopy's geodesic (the ellipsoid, not our sphere)."""

from __future__ import annotations

import math

import pytest
from geopy.distance import geodesic

from schemas.geo import Point, km_between, km_from_way

HANGZHOU, SHANGHAI = (30.2592, 120.1302), (31.2304, 121.4737)
CHENGDU, BEIJING = (30.6424, 104.0430), (39.9219, 116.4436)


def km_from_way_by_walking(point: Point, start: Point, end: Point, steps: int = 400) -> float:
    """The oracle: the geodesic distance to the nearest of many points walked along the way with geopy."""
    way = geodesic(start, end)
    walked = [start, end]
    here = start
    for _ in range(steps):
        bearing = _initial_bearing(here, end)
        here = tuple(geodesic(kilometers=way.km / steps).destination(here, bearing))[:2]
        walked.append(here)
    return min(geodesic(point, on_way).km for on_way in walked)


def _initial_bearing(a: Point, b: Point) -> float:
    lat1, lon1, lat2, lon2 = map(math.radians, (*a, *b))
    y = math.sin(lon2 - lon1) * math.cos(lat2)
    x = math.cos(lat1) * math.sin(lat2) - math.sin(lat1) * math.cos(lat2) * math.cos(lon2 - lon1)
    return math.degrees(math.atan2(y, x))


@pytest.mark.parametrize("a, b", [(HANGZHOU, SHANGHAI), (CHENGDU, BEIJING), (SHANGHAI, CHENGDU)])
def test_great_circle_distances_are_within_half_a_percent_of_the_geodesic(a: Point, b: Point) -> None:
    assert km_between(a, b) == pytest.approx(geodesic(a, b).km, rel=0.005)


@pytest.mark.parametrize(
    "point, start, end",
    [
        ((30.91, 121.12), HANGZHOU, SHANGHAI),  # beside the middle of a short way (the G15 near Shanghai)
        ((34.80, 113.69), CHENGDU, BEIJING),  # Zhengzhou, beside a long one
        ((32.00, 122.00), HANGZHOU, SHANGHAI),  # beyond the end: the distance to the end
        ((30.50, 120.70), HANGZHOU, SHANGHAI),  # on the other side of the way
    ],
)
def test_the_distance_from_a_way_is_to_its_nearest_point(point: Point, start: Point, end: Point) -> None:
    assert km_from_way(point, start, end) == pytest.approx(km_from_way_by_walking(point, start, end), rel=0.01, abs=0.5)


def test_what_lies_behind_the_start_is_not_on_the_way_but_the_start_itself_is() -> None:
    assert km_from_way((30.00, 119.00), HANGZHOU, SHANGHAI) is None  # south-west of Hangzhou, going north-east
    assert km_from_way(HANGZHOU, HANGZHOU, SHANGHAI) == 0.0
    assert km_from_way(SHANGHAI, HANGZHOU, HANGZHOU) == pytest.approx(km_between(SHANGHAI, HANGZHOU))  # nowhere
