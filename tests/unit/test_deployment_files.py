"""docker/ cannot be run here (no Docker engine); its files must still agree with what is tested."""

from __future__ import annotations

import re
import tomllib

import yaml

from jobs.settings import PROJECT_ROOT

DOCKER = PROJECT_ROOT / "docker"


def pinned(requirement_name: str) -> str:
    dependencies = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d.split("==")[1] for d in dependencies if d.startswith(f"{requirement_name}=="))


def pom_property(name: str) -> str:
    pom = (PROJECT_ROOT / "connectors/local/pom.xml").read_text()
    match = re.search(rf"<{name}>([^<]+)</{name}>", pom)
    assert match is not None, name
    return match[1]


def test_flink_image_runs_the_pinned_flink_and_connector() -> None:
    dockerfile = (DOCKER / "flink/Dockerfile").read_text()
    assert f"FROM flink:{pinned('apache-flink')}-" in dockerfile
    assert f"ARG FLINK_KAFKA_CONNECTOR={pom_property('flink.kafka.connector.version')}" in dockerfile


def test_compose_kafka_matches_the_local_broker_version() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{pom_property('kafka.version')}"


def test_compose_submits_the_job_module_that_exists() -> None:
    compose = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
    command = " ".join(compose["services"]["submit"]["command"])
    job_path = re.search(r"--python /opt/orderscope/(\S+)", command)
    assert job_path is not None
    assert (PROJECT_ROOT / job_path[1]).is_file()


def test_cluster_config_uses_thread_mode() -> None:
    config = yaml.safe_load((DOCKER / "flink/flink-conf.yaml").read_text())
    assert config["python.execution-mode"] == "thread"
