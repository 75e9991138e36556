"""`orderscope`: run the pipeline's jobs and the local stack they run on."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from connectors import kafka
from connectors.clickhouse import ClickHouseTarget, keep_events_for, migrate
from connectors.local import FLINK_JARS_DIR
from connectors.local.flink_cluster import FlinkCluster, FlinkSession, PythonJob
from connectors.local.process import StartupError
from connectors.local.stack import LocalStack
from connectors.simulator.scenarios import SCENARIOS
from jobs.settings import PROJECT_ROOT, Settings, SettingsError
from schemas.topics import ALL_TOPICS

SQL_DIR = PROJECT_ROOT / "sql"
JOB_PACKAGES = ("jobs", "connectors", "schemas")
READABLE_FORMAT = "PrettyCompactMonoBlock"
DEFAULT_START = datetime.fromisoformat("2026-11-21T00:00:00+08:00")


def say(message: str) -> None:
    print(message, flush=True)


def local_stack(settings: Settings) -> LocalStack:
    return LocalStack(
        state_dir=settings.state_dir,
        kafka_port=settings.kafka_port,
        kafka_controller_port=settings.kafka_controller_port,
        kafka_partitions=settings.kafka_partitions,
        clickhouse_port=settings.clickhouse_port,
        clickhouse_user=settings.clickhouse_user,
        clickhouse_password=settings.clickhouse_password,
        topics=ALL_TOPICS,
    )


def clickhouse(settings: Settings) -> ClickHouseTarget:
    return settings.clickhouse


def prepare_database(settings: Settings, report: Callable[[str], None] = say) -> int:
    """Applies the migrations not applied yet and the events' retention; returns how many were applied."""
    target = clickhouse(settings)
    applied = migrate(target, SQL_DIR, report=report)
    keep_events_for(target, settings.events_ttl_days, report=report)
    return len(applied)


def cmd_stack(settings: Settings, args: argparse.Namespace) -> int:
    stack = local_stack(settings)
    if args.action == "up":
        stack.up(fresh=args.fresh, report=say)
    elif args.action == "down":
        stack.down(report=say)
    else:
        statuses = stack.status()
        for part in statuses:
            state = "ready" if part.ready else ("starting or unhealthy" if part.pid else "stopped")
            say(f"{part.name:<11} {state:<22} {part.address:<24} pid {part.pid or '-':<8} log {part.log}")
        return 0 if all(part.ready for part in statuses) else 3
    return 0


def flink_cluster(settings: Settings, args: argparse.Namespace) -> FlinkCluster:
    rest_port, rpc_port = args.rest_port or settings.flink_rest_port, args.rpc_port or settings.flink_rpc_port
    return FlinkCluster(settings.state_dir / "flink-cluster", rest_port=rest_port, rpc_port=rpc_port)


def cmd_cluster(settings: Settings, args: argparse.Namespace) -> int:
    cluster = flink_cluster(settings, args)
    if args.action == "up":
        cluster.up(args.taskmanagers, report=say)
    elif args.action == "down":
        cluster.down(report=say)
    else:
        return report_cluster_status(cluster)
    return 0


def report_cluster_status(cluster: FlinkCluster) -> int:
    statuses = cluster.status()
    for process in statuses:
        state = "ready" if process.ready else ("starting or unhealthy" if process.pid else "stopped")
        say(f"{process.name:<14} {state:<22} pid {process.pid or '-':<8} log {process.log}")
    jobmanager = statuses[0]
    if jobmanager.ready:
        overview = cluster.session.overview()
        taskmanagers, running = overview["taskmanagers"], overview["jobs-running"]
        slots = f"{overview['slots-available']}/{overview['slots-total']} slots free"
        say(f"{cluster.session.url}: {taskmanagers} taskmanagers, {slots}, {running} jobs running")
        for job in cluster.session.jobs():
            say(f"  job {job['jid']} {job['name']} {job['state']}")
    return 0 if all(process.ready for process in statuses) else 3


def order_visibility_job() -> PythonJob:
    jars = sorted(FLINK_JARS_DIR.glob("*.jar"))
    if len(jars) != 1:
        raise FileNotFoundError(f"Expected the Flink Kafka connector jar alone in {FLINK_JARS_DIR}: run `make setup`.")
    packages = [PROJECT_ROOT / package for package in JOB_PACKAGES]
    return PythonJob(PROJECT_ROOT / "jobs" / "order_visibility.py", packages, jars[0])


def cmd_job(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "run":
        return cmd_job_run(settings, args)
    session = FlinkSession((args.cluster or settings.flink_cluster_url).rstrip("/"))
    if args.action == "submit":
        job_id = session.submit(order_visibility_job(), settings.flink_log_dir, report=say)
        say(f"job submitted: {job_id}; web UI {session.url}")
        say(f"cancel it with `orderscope job cancel {job_id} --cluster {session.url}`")
    elif args.job_id is None:
        raise ValueError("job cancel needs the job's id: `orderscope cluster status` lists the cluster's jobs.")
    else:
        session.cancel(args.job_id)
        say(f"job {args.job_id} cancelled")
    return 0


def cmd_db_migrate(settings: Settings, args: argparse.Namespace) -> int:
    applied = prepare_database(settings)
    say(f"applied {applied} migration(s); database {settings.clickhouse_database} is up to date")
    return 0


def cmd_replay(settings: Settings, args: argparse.Namespace) -> int:
    path: Path = args.file
    total = sum(1 for line in path.open(encoding="utf-8") if line.strip())
    say(f"replaying {total} records from {path} into {settings.bootstrap_servers}")
    sent = kafka.replay(
        settings.bootstrap_servers,
        kafka.read_recording(path),
        realtime=args.realtime,
        on_progress=lambda n: say(f"  {n}/{total} records sent"),
    )
    say(f"replayed {sent} records")
    return 0


def cmd_job_run(settings: Settings, args: argparse.Namespace) -> int:
    from jobs import runner  # imports PyFlink: only for the commands that run a job

    runner.run(settings, until_idle_s=args.until_idle, fresh=args.fresh, report=say)
    return 0


def cmd_baseline(settings: Settings, args: argparse.Namespace) -> int:
    from jobs import baseline

    baseline.run(settings, until_idle_s=args.until_idle, report=say)
    return 0


def cmd_sql(settings: Settings, args: argparse.Namespace) -> int:
    output_format = args.format or READABLE_FORMAT
    query = Path(args.query).read_text(encoding="utf-8") if Path(args.query).is_file() else args.query
    parameters = dict(_parameter(text) for text in args.param)
    result = clickhouse(settings).connect().raw_query(query, parameters=parameters, fmt=output_format)
    sys.stdout.buffer.write(result)
    sys.stdout.flush()
    return 0


def _parameter(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals:
        raise ValueError(f"--param {text!r}: write it as name=value, as in --param since=2026-11-20")
    return name, value


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from connectors.simulator.simulation import simulate

    say(f"simulating {args.orders} orders (scenario {args.scenario}, seed {args.seed}) ...")
    simulation = simulate(args.orders, args.seed, args.start, args.scenario)
    truth_path: Path = args.truth or (
        args.out.with_suffix(".truth.json") if args.out else settings.state_dir / "truth.json"
    )
    truth_path.parent.mkdir(parents=True, exist_ok=True)
    truth_path.write_text(json.dumps(simulation.truth(args.seed, args.scenario), ensure_ascii=False, indent=1))
    total = len(simulation.messages)
    say(f"{total} raw messages, {len(simulation.malformed)} of them malformed; ground truth in {truth_path}")
    if args.out:
        with args.out.open("w", encoding="utf-8") as out:
            for message in simulation.messages:
                out.write(json.dumps(message.line(), ensure_ascii=True) + "\n")
        say(f"recording written to {args.out}")
        return 0
    recorded = (kafka.RecordedMessage(**message.line()) for message in simulation.messages)
    every = max(total // 20, 1)
    kafka.replay(
        settings.bootstrap_servers,
        recorded,
        rate=args.rate,
        on_progress=lambda n: say(f"  {n}/{total} sent") if n % every == 0 or n == total else None,
    )
    return 0


def cmd_rules_publish(settings: Settings, args: argparse.Namespace) -> int:
    from jobs.rule_trial import published_sets
    from schemas.rules import load_rules, publication
    from schemas.topics import RULES

    before = [load_rules(), *published_sets(settings.bootstrap_servers)]
    version, record = publication(args.file, int(time.time() * 1000), before)
    kafka.replay(settings.bootstrap_servers, [kafka.RecordedMessage(RULES, "rules", record, 0)])
    say(f"rule set {version} published to {RULES}: the job applies it from its next assessments")
    return 0


def cmd_rules_test(settings: Settings, args: argparse.Namespace) -> int:
    from jobs.rule_trial import print_trial, run_trial, write_trial

    trial = run_trial(args.file, args.recording, settings, args.live, say)
    print_trial(trial, say)
    if args.out:
        write_trial(trial, args.out)
        say(f"written to {args.out}")
    return 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from jobs.demo import run_demo

    return run_demo(settings, args.recording, report=say)


def cmd_evaluate(settings: Settings, args: argparse.Namespace) -> int:
    from jobs.evaluate import evaluate

    evaluate(args.scenario, args.seed, args.orders, args.out, report=say)
    return 0


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="orderscope", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    stack = commands.add_parser("stack", help="start, stop or report the local Kafka and ClickHouse")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.add_argument("--fresh", action="store_true", help="with up: wipe the local state first")
    stack.set_defaults(handler=cmd_stack)

    db = commands.add_parser("db", help="ClickHouse schema")
    db.add_argument("action", choices=["migrate"])
    db.set_defaults(handler=cmd_db_migrate)

    replay = commands.add_parser("replay", help="produce a recording (JSON Lines) into Kafka")
    replay.add_argument("file", type=Path)
    replay.add_argument("--realtime", action="store_true", help="keep the gaps between records")
    replay.set_defaults(handler=cmd_replay)

    cluster = commands.add_parser("cluster", help="start, stop or report a standalone Flink session cluster here")
    cluster.add_argument("action", choices=["up", "down", "status"])
    cluster.add_argument("--taskmanagers", type=int, default=2, help="with up: how many (each its own JVM and Python)")
    cluster.add_argument("--rest-port", type=int, help="REST API, web UI (default: ORDERSCOPE_FLINK_REST_PORT, 8081)")
    cluster.add_argument("--rpc-port", type=int, help="the JobManager's (default: ORDERSCOPE_FLINK_RPC_PORT, 6123)")
    cluster.set_defaults(handler=cmd_cluster)

    job = commands.add_parser("job", help="run the order-visibility job locally, or submit it to a Flink cluster")
    job.add_argument("action", choices=["run", "submit", "cancel"])
    job.add_argument("job_id", nargs="?", help="with cancel: the id that submit printed")
    job.add_argument("--until-idle", type=float, metavar="SECONDS", help="stop once idle this long, output written")
    job.add_argument(
        "--fresh",
        action="store_true",
        help="ignore earlier checkpoints; read again from ORDERSCOPE_START_FROM (earliest)",
    )
    job.add_argument("--cluster", help="with submit, cancel: REST URL (default: the local cluster's)")
    job.set_defaults(handler=cmd_job)

    baseline = commands.add_parser(
        "baseline", help="the bench's yardstick: the job's work in one plain kafka-python process, from the start"
    )
    baseline.add_argument("--until-idle", type=float, metavar="SECONDS", help="stop once no record came for this long")
    baseline.set_defaults(handler=cmd_baseline)

    sql = commands.add_parser("sql", help="run a query against ClickHouse and print the result")
    sql.add_argument("query", help="a query, or a .sql file such as one of the cookbook's in sql/queries/")
    sql.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE", help="a value for the query's {NAME:Type}"
    )
    sql.add_argument("--format", help=f"any ClickHouse output format (default: {READABLE_FORMAT})")
    sql.set_defaults(handler=cmd_sql)

    simulate = commands.add_parser("simulate", help="generate realistic traffic for every source, with ground truth")
    simulate.add_argument("--orders", type=int, default=2000)
    simulate.add_argument("--seed", type=int, default=1, help="same seed, same output")
    simulate.add_argument("--scenario", default="baseline", choices=sorted(SCENARIOS))
    simulate.add_argument("--start", type=datetime.fromisoformat, default=DEFAULT_START, help="ISO-8601, with offset")
    target = simulate.add_mutually_exclusive_group()
    target.add_argument("--out", type=Path, help="write a recording (JSON Lines) instead of producing to Kafka")
    target.add_argument("--rate", type=float, help="events per second into Kafka (default: as fast as possible)")
    simulate.add_argument("--truth", type=Path, help="ground-truth file (default: beside --out, or in the state dir)")
    simulate.set_defaults(handler=cmd_simulate)

    evaluate = commands.add_parser(
        "evaluate", help="a simulated scenario through a real stack of its own, alerts and ETAs scored against truth"
    )
    evaluate.add_argument("--scenario", default="baseline", choices=sorted(SCENARIOS))
    evaluate.add_argument("--seed", type=int, default=1)
    evaluate.add_argument("--orders", type=int, default=2000, help="of the scenario's day (the warm-up has 3x)")
    evaluate.add_argument("--out", type=Path, help="also write the figures here, as JSON")
    evaluate.set_defaults(handler=cmd_evaluate)

    rules = commands.add_parser("rules", help="business rules: publish a set to the running job, or try one first")
    rule_commands = rules.add_subparsers(dest="rules_command", required=True)
    publish = rule_commands.add_parser("publish", help="put a rule set (YAML) in force, without a restart")
    publish.add_argument("file", type=Path)
    publish.set_defaults(handler=cmd_rules_publish)
    trial = rule_commands.add_parser(
        "test", help="which orders a rule set would flag in a recording, against the set in force"
    )
    trial.add_argument("file", type=Path, help="the candidate rule set (YAML)")
    trial.add_argument("--recording", type=Path, required=True, help="JSON Lines, as `simulate --out` writes")
    trial.add_argument("--live", type=Path, help="compare with this set (default: the last one published)")
    trial.add_argument("--out", type=Path, help="also write every flagged order here, as JSON")
    trial.set_defaults(handler=cmd_rules_test)

    demo = commands.add_parser("demo", help="stack up, migrate, run the job, replay, show the result")
    demo.add_argument("--recording", type=Path, default=PROJECT_ROOT.parent / "shared/contracts/examples/orders.jsonl")
    demo.set_defaults(handler=cmd_demo)
    return root


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for chatty in ("kafka", "urllib3", "clickhouse_connect"):  # their retries while a part starts are expected
        logging.getLogger(chatty).setLevel(logging.CRITICAL)
    handler: Callable[[Settings, argparse.Namespace], int] = args.handler
    try:
        return handler(Settings.from_env(), args)
    except (SettingsError, StartupError, FileNotFoundError, ValueError, RuntimeError) as error:
        say(f"error: {error}")
    except kafka.KafkaError as error:
        say(f"error: Kafka: {error}. Is the broker up? `orderscope stack status` tells.")
    except ConnectionError as error:
        say(f"error: {error}. Is ClickHouse up? `orderscope stack status` tells.")
    except Exception as error:
        if type(error).__module__.startswith("clickhouse_connect"):
            hint = " Is ClickHouse up? `orderscope stack status` tells." if "Connection refused" in str(error) else ""
            say(f"error: ClickHouse: {error}{hint}")
        else:
            raise
    return 1


if __name__ == "__main__":
    sys.exit(main())
