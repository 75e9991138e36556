"""The simulated world: real Chinese cities, warehouses, carriers, channels and their habits."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class City:
    name: str
    province: str
    district: str
    region_code: str  # six-digit administrative code of the district
    lat: float
    lon: float
    weight: float  # share of buyers


CITIES = (
    City("上海市", "上海", "黄浦区", "310101", 31.2304, 121.4737, 10),
    City("北京市", "北京", "朝阳区", "110105", 39.9219, 116.4436, 9),
    City("深圳市", "广东", "南山区", "440305", 22.5333, 113.9304, 8),
    City("广州市", "广东", "天河区", "440106", 23.1291, 113.3612, 8),
    City("杭州市", "浙江", "西湖区", "330106", 30.2592, 120.1302, 7),
    City("成都市", "四川", "武侯区", "510107", 30.6424, 104.0430, 6),
    City("武汉市", "湖北", "江汉区", "420103", 30.6014, 114.2706, 5),
    City("南京市", "江苏", "鼓楼区", "320106", 32.0662, 118.7697, 5),
    City("西安市", "陕西", "雁塔区", "610113", 34.2133, 108.9480, 4),
    City("重庆市", "重庆", "渝中区", "500103", 29.5527, 106.5693, 4),
    City("苏州市", "江苏", "姑苏区", "320508", 31.3119, 120.6190, 4),
    City("长沙市", "湖南", "岳麓区", "430104", 28.2356, 112.9313, 3),
    City("郑州市", "河南", "金水区", "410105", 34.7987, 113.6866, 3),
    City("天津市", "天津", "和平区", "120101", 39.1168, 117.1951, 3),
    City("青岛市", "山东", "市南区", "370202", 36.0671, 120.3826, 2),
    City("厦门市", "福建", "思明区", "350203", 24.4479, 118.0894, 2),
)


@dataclass(frozen=True)
class Warehouse:
    code: str
    city: City


WAREHOUSES = (
    Warehouse("WH-HZ-01", CITIES[4]),
    Warehouse("WH-SH-02", CITIES[0]),
    Warehouse("WH-GZ-01", CITIES[3]),
    Warehouse("WH-BJ-01", CITIES[1]),
    Warehouse("WH-CD-01", CITIES[5]),
    Warehouse("WH-WH-01", CITIES[6]),
)


@dataclass(frozen=True)
class Carrier:
    code: str  # as the tracking aggregator names it
    prefix: str  # waybill number prefix
    speed_kmh: float  # door-to-door average on line-haul
    handling_h: float  # sorting, hub dwell and last mile


CARRIERS = (
    Carrier("yuantong", "YT", 38.0, 20.0),
    Carrier("zhongtong", "ZT", 36.0, 22.0),
    Carrier("shunfeng", "SF", 60.0, 12.0),
    Carrier("jd", "JDVA", 55.0, 10.0),
    Carrier("yunda", "YD", 34.0, 24.0),
)


@dataclass(frozen=True)
class Channel:
    name: str
    weight: float
    promise_h: int  # delivery promised this long after payment
    confirms: float  # share of delivered orders a buyer confirms


CHANNELS = (
    Channel("tmall", 26, 72, 0.6),
    Channel("douyin", 22, 72, 0.5),
    Channel("xiaohongshu", 10, 96, 0.5),
    Channel("wechat", 12, 72, 0.5),
    Channel("app", 18, 48, 0.7),
    Channel("pos", 12, 0, 0.0),
)

# Relative order volume per hour of the day (China time): quiet nights, evening peak.
HOURLY = (2, 1, 1, 1, 1, 1, 2, 4, 6, 7, 8, 8, 9, 8, 7, 7, 7, 8, 9, 11, 13, 14, 12, 6)


def distance_km(a: City, b: City) -> float:
    """Great-circle distance (haversine): plenty for transit times, cheap per event."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a.lat, a.lon, b.lat, b.lon))
    h = math.sin((lat2 - lat1) / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


# A vehicle's drive from its warehouse to the carriers' hub: this many pings, one every PING_EVERY_MS.
DRIVE_TO_HUB_PINGS, PING_EVERY_MS = 12, 10 * 60_000


def on_the_way_to_hub(warehouse: Warehouse, ping: int) -> tuple[float, float]:
    """Where a vehicle is at its nth ping of the drive to the hub (0: the warehouse): north-east of the city."""
    return round(warehouse.city.lat + 0.01 * ping, 6), round(warehouse.city.lon + 0.012 * ping, 6)


def nearest_warehouse(city: City) -> Warehouse:
    return min(WAREHOUSES, key=lambda w: distance_km(w.city, city))
