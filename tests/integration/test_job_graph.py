"""The job's graph, as Flink's planner builds it: its operator ids, which checkpoints are mapped by."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyflink.common import Configuration
from pyflink.datastream import StreamExecutionEnvironment

from jobs import order_visibility, runner
from jobs.settings import Settings

pytestmark = pytest.mark.integration


def operator_ids(parallelism: int, state_dir: Path) -> list[str]:
    settings = Settings(parallelism=parallelism, state_dir=state_dir)
    configuration = Configuration()
    for key, value in runner.local_configuration(settings, None).items():
        configuration.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(configuration)
    order_visibility.build(env, settings)
    job_graph = env._j_stream_execution_environment.getStreamGraph(True).getJobGraph()
    return sorted(
        operator.getGeneratedOperatorID().toString()
        for vertex in job_graph.getVerticesAsArray()
        for operator in vertex.getOperatorIDs()
    )


def test_a_checkpoint_maps_onto_the_graph_at_another_parallelism(tmp_path: Path) -> None:
    """Operators without a uid (the micro-batch query's) have ids derived from the graph's shape: a shape that
    followed the parallelism would leave their state unmapped when the job resumes at another."""
    assert operator_ids(1, tmp_path) == operator_ids(2, tmp_path)
