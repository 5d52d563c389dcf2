"""riskray's exporter: what no process exports by itself, computed on each scrape.

* ``riskray_stream_lag_messages{query}``: messages in the topic the query has not read yet (the topic's end
  offsets minus the end offsets of the query's last micro-batch, from the stream's progress log);
* ``riskray_stream_feature_freshness_seconds{query}``: 0 when the query has read to the end; otherwise how long
  since its last micro-batch finished (how stale what it has written is, at least);
* ``riskray_stream_late_rows_dropped_total``: rows kept out of the windows, behind the stream's watermark;
* ``riskray_prediction_log_rows``: rows in ``predictions`` (its identity's high mark: no table scan), to set
  beside ``predictions_total``;
* ``riskray_dead_letters``: messages in the dead-letter topic.

A source that cannot be read leaves its series out (and ``riskray_exporter_source_up{source}`` 0), never a 0.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import datetime
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from app import db
from app.config import Settings
from app.stream_progress import last_batches, late_rows_dropped, progress_log_path

logger = logging.getLogger("riskray.exporter")
class RiskrayCollector:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer = None

    def _end_offsets(self, topic: str) -> dict[str, int]:
        from kafka import KafkaConsumer, TopicPartition

        if self._consumer is None:
            self._consumer = KafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap,
                                           request_timeout_ms=5000)
        partitions = [TopicPartition(topic, p) for p in self._consumer.partitions_for_topic(topic) or ()]
        return {str(tp.partition): offset for tp, offset in self._consumer.end_offsets(partitions).items()}

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("riskray_exporter_source_up", "1 when the exporter could read the source",
                               labels=["source"])
        yield from self._guarded("kafka", up, self._stream)
        yield from self._guarded("postgres", up, self._prediction_log)
        yield up

    def _guarded(self, source: str, up: GaugeMetricFamily, collect) -> Iterator[Metric]:
        try:
            metrics = list(collect())
        except Exception as error:
            logger.warning("exporter: %s unreadable: %s", source, str(error).splitlines()[0][:200])
            if source == "kafka" and self._consumer is not None:
                self._consumer.close()
                self._consumer = None
            up.add_metric([source], 0)
            return
        up.add_metric([source], 1)
        yield from metrics

    def _stream(self) -> Iterator[Metric]:
        s = self.settings
        path = progress_log_path(s)
        ends = self._end_offsets(s.kafka_topic)
        lag = GaugeMetricFamily("riskray_stream_lag_messages", "Messages in the topic the query has not read yet",
                                labels=["query"])
        fresh = GaugeMetricFamily("riskray_stream_feature_freshness_seconds",
                                  "0 when the query has read to the end of the topic, else seconds since its last "
                                  "micro-batch", labels=["query"])
        now = time.time()
        for query, record in last_batches(path).items():
            read = (record.get("end_offsets") or {}).get(s.kafka_topic, {})
            behind = sum(max(end - int(read.get(p, 0)), 0) for p, end in ends.items())
            lag.add_metric([query], behind)
            finished = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()
            finished += record.get("batch_ms", 0) / 1000
            fresh.add_metric([query], 0.0 if behind == 0 else max(now - finished, 0.0))
        yield lag
        yield fresh
        dropped = CounterMetricFamily("riskray_stream_late_rows_dropped", "Rows dropped behind the watermark")
        dropped.add_metric([], late_rows_dropped(s))
        yield dropped
        dead = GaugeMetricFamily("riskray_dead_letters", "Messages in the dead-letter topic")
        dead.add_metric([], sum(self._end_offsets(s.kafka_dlq_topic).values()))
        yield dead

    def _prediction_log(self) -> Iterator[Metric]:
        with db.connection(self.settings) as conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(prediction_id), 0) FROM predictions")
            rows = int(cur.fetchone()[0])
        logged = GaugeMetricFamily("riskray_prediction_log_rows", "Rows written to the predictions table")
        logged.add_metric([], rows)
        yield logged


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    registry = CollectorRegistry()
    registry.register(RiskrayCollector(settings))  # type: ignore[arg-type]
    server = make_server(settings.monitoring_host, settings.exporter_port, make_wsgi_app(registry),
                         handler_class=_QuietHandler)
    logger.info("exporter on http://%s:%d/metrics", settings.monitoring_host, settings.exporter_port)
    server.serve_forever()
