"""What `orderscope job submit` ships to a Flink cluster."""

from __future__ import annotations

import zipfile
from pathlib import Path

from jobs.cli import order_visibility_job


def test_shipped_zip_holds_each_package_at_its_root_with_its_yaml_and_nothing_else(tmp_path: Path) -> None:
    with zipfile.ZipFile(order_visibility_job().zip_packages(tmp_path)) as archive:
        names = archive.namelist()
    assert {"jobs/order_visibility.py", "connectors/clickhouse.py", "schemas/identity.yaml"} <= set(names)
    assert "schemas/sources/tmall.yaml" in names
    assert all(name.endswith((".py", ".yaml")) for name in names)
