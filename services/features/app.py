"""Features worker wiring: the faust app, its topics and views, start-up, `main()`.

What the worker does is in `topology.py` (agents and tables in data-flow order) and
`handlers.py` (the logic per record); faust internals are in `faust_compat.py`.

Processing is at-least-once; the replay guards in `join` and the absolute partials in
`stats` make its effect exactly-once (tests/integration/test_features_kill.py). Windows close
in event time only: ingestion's Watermark records in admuse.events are merged by the events
agent and forwarded by the tick timer into every join partition, after the events they cover
(`watermark`); a join partition closes a window once the least watermark over all events
partitions passes its end plus the grace. Several workers may share the partitions: each
forwards the watermarks of the events partitions it reads.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

import faust

from services.common.codec import SchemaRegistry
from services.common.kafka import ensure_topics, wait_for_broker
from services.common.kafka_logs import install_startup_retry_filter
from services.common.logging import configure_logging, get_logger, stdlib_handlers
from services.common.security import build_ssl_context
from services.common.topics import DAY_MS, USER_DATA_RETENTION_MS, Topics, TopicSpec
from services.features.catalog import CompactedView
from services.features.faust_compat import (
    FeaturesApp,
    changelog_topic_name,
    quiet_library_loggers,
)
from services.features.handlers import Handlers, RewardRules
from services.features.join import JoinConfig, JoinTable
from services.features.metrics import FeaturesMetrics
from services.features.rejoin import REJOIN_EXIT_CODE, rejoin_requested
from services.features.settings import Settings
from services.features.topology import Tables, declare_tables, declare_topology

__all__ = ["build_app", "internal_topics", "main"]

log = get_logger(__name__)


def internal_topics(settings: Settings, topics: Topics) -> tuple[TopicSpec, TopicSpec]:
    """The worker's own repartition topics (named after the app id, prefix included)."""
    app_id = f"{settings.kafka.topic_prefix}{settings.app_id}"
    by_decision = TopicSpec(
        f"{app_id}-events-by-decision",
        topics.decisions.partitions,
        "delete",
        "decision_id",
        "AdEvent",
        retention_ms=USER_DATA_RETENTION_MS,  # events carry the user pseudonym
    )
    partials = TopicSpec(
        f"{app_id}-stats-partials",
        topics.stats.partitions,
        "delete",
        "stats key",
        None,
        retention_ms=7 * DAY_MS,
    )
    return by_decision, partials


def _broker_kwargs(settings: Settings) -> dict[str, Any]:
    kafka = settings.kafka
    kw: dict[str, Any] = {
        "broker": [f"kafka://{h.strip()}" for h in kafka.bootstrap_servers.split(",")],
        "broker_client_id": kafka.client_id,
        "broker_request_timeout": kafka.request_timeout_ms / 1000,
    }
    ssl_context = build_ssl_context(kafka)  # the same context the aiokafka clients get
    if kafka.sasl_mechanism:
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        kw["broker_credentials"] = faust.SASLCredentials(
            username=kafka.sasl_username,
            password=password,
            mechanism=kafka.sasl_mechanism,
            ssl_context=ssl_context,
        )
    elif ssl_context is not None:
        kw["broker_credentials"] = faust.SSLCredentials(ssl_context)
    return kw


def _new_app(settings: Settings) -> FeaturesApp:
    return FeaturesApp(
        f"{settings.kafka.topic_prefix}{settings.app_id}",
        **_broker_kwargs(settings),
        store="memory://",
        datadir=str(settings.state_dir),
        autodiscover=False,
        topic_allow_declare=True,
        topic_disable_leader=True,
        topic_replication_factor=settings.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        broker_commit_interval=settings.commit_interval_s,
        producer_acks=-1,
        producer_linger=settings.producer_linger_s,
        producer_max_batch_size=262_144,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_in_thread=False,
    )


def _join_config(settings: Settings) -> JoinConfig:
    return JoinConfig(
        default_window_ms=settings.default_window_ms,
        close_grace_ms=settings.close_grace_ms,
        retention_ms=int(settings.late_retention_s * 1000),
        max_hold_ms=settings.max_hold_ms,
        decision_watermarks=settings.decision_watermarks,
        stats_window_ms=settings.stats_window_ms,
        half_life_s=settings.decay_half_life_s,
    )


def build_app(settings: Settings) -> faust.App:
    """The faust app with every agent, table, timer and page registered."""
    kafka = settings.kafka
    topics = Topics.from_settings(kafka)
    registry = SchemaRegistry.load()
    metrics = FeaturesMetrics()
    by_decision_spec, partials_spec = internal_topics(settings, topics)
    app = _new_app(settings)
    tables = declare_tables(app, by_decision_spec, partials_spec)

    def view(label: str, spec: TopicSpec, schema: str) -> CompactedView:
        def on_bad(reason: str) -> None:
            metrics.bad_records.labels(label, reason).inc()

        return CompactedView(
            kafka, spec.name, spec.partitions, registry.codec(schema), on_bad=on_bad
        )

    campaigns = view("campaigns", topics.campaigns, "Campaign")
    creatives = view("creatives", topics.creatives, "Creative")
    rules = RewardRules(campaigns.values, metrics)
    join = JoinTable(tables.join, _join_config(settings), rules)
    handlers = Handlers(settings, topics, registry, metrics, join, creatives.values)
    declare_topology(app, handlers, join, tables, by_decision_spec, partials_spec)

    async def start() -> None:
        await wait_for_broker(kafka, 60)  # refused TLS/SASL credentials fail here, clearly
        await ensure_topics(
            kafka,
            [*topics, by_decision_spec, partials_spec, *_changelogs(tables)],
            replication_factor=settings.replication_factor,
        )
        quiet_library_loggers(settings.log.level)
        install_startup_retry_filter()  # on the worker's own handlers too
        await campaigns.start()
        await creatives.start()
        log.info("features_starting", app_id=app.conf.id, join_partitions=tables.join.partitions)

    async def stop() -> None:
        await campaigns.stop()
        await creatives.stop()

    app.admuse_start, app.admuse_stop = start, stop
    return app


def _changelogs(tables: Tables) -> list[TopicSpec]:
    """The tables' changelog topics, created before faust's consumer first asks for them
    (faust_compat.changelog_topic_name says why)."""
    return [
        TopicSpec(
            changelog_topic_name(table),
            table.partitions,
            "compact",
            "table key",
            None,
            # held events carry the user pseudonym: an erased (deleted) entry's old values
            # are compacted away within the erasure bound
            extra=MappingProxyType({"max.compaction.lag.ms": str(USER_DATA_RETENTION_MS)}),
        )
        for table in (tables.join, tables.stats)
    ]


def main() -> None:
    settings = Settings()
    configure_logging(settings.log.level, settings.log.format, service="features")
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    app = build_app(settings)
    # Keep configure_logging's structured handler: faust would install a plain-text one.
    app.conf.loghandlers = stdlib_handlers()
    worker = faust.Worker(
        app,
        loglevel=settings.log.level,
        quiet=True,
        redirect_stdouts=False,
        logging_config={"version": 1, "disable_existing_loggers": False},
    )
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if rejoin_requested():
            raise SystemExit(REJOIN_EXIT_CODE) from None
        raise
