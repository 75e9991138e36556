from __future__ import annotations

from pathlib import Path

import pytest

from jobs.settings import Settings, SettingsError
from schemas.stages import DAY_MS


def test_environment_overrides_defaults_with_typed_values() -> None:
    settings = Settings.from_env(
        {"ORDERSCOPE_KAFKA_PORT": "19092", "ORDERSCOPE_STATE_DIR": "/tmp/x", "ORDERSCOPE_CHECKPOINT_DIR": "/tmp/c"}
    )
    assert settings.bootstrap_servers == "127.0.0.1:19092"
    assert (settings.state_dir, settings.checkpoints) == (Path("/tmp/x"), Path("/tmp/c"))


def test_explicit_urls_win_over_local_ports() -> None:
    settings = Settings.from_env(
        {
            "ORDERSCOPE_CLICKHOUSE_URL": "https://ch.example:8443",
            "ORDERSCOPE_KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
        }
    )
    assert (settings.clickhouse_endpoint, settings.bootstrap_servers) == ("https://ch.example:8443", "k1:9092,k2:9092")


def test_bad_number_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="ORDERSCOPE_PARALLELISM='two'"):
        Settings.from_env({"ORDERSCOPE_PARALLELISM": "two"})


def test_retention_is_configured_in_days_and_reaches_the_stages_in_milliseconds() -> None:
    settings = Settings.from_env({"ORDERSCOPE_FINISHED_ORDER_RETENTION_DAYS": "2"})
    assert (settings.retention.finished_order_ms, settings.retention.open_order_ms) == (2 * DAY_MS, 30 * DAY_MS)
    with pytest.raises(SettingsError, match="ORDERSCOPE_VEHICLE_RETENTION_DAYS must be at least 1"):
        Settings.from_env({"ORDERSCOPE_VEHICLE_RETENTION_DAYS": "0"})


def test_events_are_kept_for_a_number_of_days_a_clickhouse_ttl_can_reach_or_for_good() -> None:
    assert Settings.from_env({"ORDERSCOPE_EVENTS_TTL_DAYS": "0"}).events_ttl_days == 0
    with pytest.raises(SettingsError, match="ORDERSCOPE_EVENTS_TTL_DAYS=36500: give 1 to 3650 days"):
        Settings.from_env({"ORDERSCOPE_EVENTS_TTL_DAYS": "36500"})


def test_production_refuses_the_development_pseudonymization_key() -> None:
    settings = Settings.from_env({"ORDERSCOPE_ENVIRONMENT": "production"})
    with pytest.raises(SettingsError, match="production with the development pseudonymization key"):
        settings.pseudonymization_key()
    assert Settings.from_env(
        {"ORDERSCOPE_ENVIRONMENT": "production", "ORDERSCOPE_PII_KEY": "s3cret"}
    ).pseudonymization_key()


def test_the_pseudonymization_key_is_read_from_its_file_when_the_job_starts(tmp_path: Path) -> None:
    key_file = tmp_path / "pii.key"
    settings = Settings.from_env({"ORDERSCOPE_PII_KEY_FILE": str(key_file), "ORDERSCOPE_ENVIRONMENT": "production"})
    with pytest.raises(SettingsError, match="cannot read it"):
        settings.pseudonymization_key()
    key_file.write_text("from-the-secret-store\n")
    assert settings.pseudonymization_key() == "from-the-secret-store"
