"""Backpressure: pause at the limit, resume at half, and one log line per change of state."""

from __future__ import annotations

import logging

import pytest

from connector.observability.metrics import Metrics
from connector.pipeline.backpressure import Backpressure


def _sample(metrics: Metrics, name: str, pipeline: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"pipeline": pipeline})


def test_pauses_at_the_limit_and_resumes_only_at_half(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    gate = Backpressure("sellercloud", 10, metrics)
    caplog.set_level(logging.INFO, logger="connector.pipeline.backpressure")
    for _ in range(9):
        gate.added()
    assert not gate.should_pause(store_up=True) and gate.capacity == 1
    gate.added()
    assert gate.should_pause(store_up=True) and gate.capacity == 0
    # A held platform completes one event now and then: still paused until half are done.
    for _ in range(4):
        gate.completed()
        assert gate.should_pause(store_up=True)
    gate.completed()
    assert gate.inflight == 5 and not gate.should_pause(store_up=True)
    assert [r.getMessage() for r in caplog.records] == [
        "backpressure: fetching paused",
        "backpressure: fetching resumed",
    ]
    assert _sample(metrics, "order_sync_backpressure_pauses_total", "sellercloud") == 1
    assert _sample(metrics, "order_sync_partitions_paused", "sellercloud") == 0
    assert _sample(metrics, "order_sync_inflight_events", "sellercloud") == 5


def test_a_store_outage_pauses_whatever_the_count_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    metrics = Metrics()
    gate = Backpressure("intake", 10, metrics)
    caplog.set_level(logging.INFO, logger="connector.pipeline.backpressure")
    for _ in range(50):
        assert gate.should_pause(store_up=False)
    assert _sample(metrics, "order_sync_partitions_paused", "intake") == 1
    assert not gate.should_pause(store_up=True)
    assert len(caplog.records) == 2


def test_pipelines_have_their_own_series() -> None:
    metrics = Metrics()
    held, free = Backpressure("sellercloud", 1, metrics), Backpressure("vucustom", 1, metrics)
    held.added()
    assert held.should_pause(store_up=True) and not free.should_pause(store_up=True)
    assert _sample(metrics, "order_sync_partitions_paused", "sellercloud") == 1
    assert _sample(metrics, "order_sync_partitions_paused", "vucustom") == 0
