"""Liveness rules and librdkafka statistics as the endpoints read them."""
import json
import time

from confluent_kafka import TopicPartition

from consumer import config
from consumer.health import Probes
from consumer.loop_watch import LoopWatch

SETTINGS = config.from_env({}, database_url="postgresql://app@/db", health_poll_timeout_s=30, health_batch_timeout_s=120)


def probes(watch: LoopWatch) -> Probes:
    return Probes(SETTINGS, watch)  # the engine connects lazily: liveness never touches it


def test_the_http_port_defaults_to_9400_which_the_deployment_probes_use():
    assert config.from_env({}).metrics_port == 9400
    assert config.from_env({"METRICS_PORT": "0"}).metrics_port == 0


def test_an_idle_loop_that_stopped_polling_is_not_live():
    watch = LoopWatch()
    watch.polled()
    assert probes(watch).liveness()[0] is True
    watch.last_poll = time.monotonic() - 31
    live, body = probes(watch).liveness()
    assert live is False and "has not polled for 31s" in body["reason"]


def test_a_batch_may_run_up_to_its_own_bound_without_a_poll():
    watch = LoopWatch()
    watch.polled(batch_size=10)
    watch.last_poll = watch._batch_since = time.monotonic() - 60
    assert probes(watch).liveness()[0] is True
    watch.last_poll = watch._batch_since = time.monotonic() - 121
    live, body = probes(watch).liveness()
    assert live is False and "a batch has run for 121s" in body["reason"]
    # Asking for the next batch finishes this one.
    watch.polling(next_batch=True)
    assert probes(watch).liveness()[0] is True and watch.batch_seconds() is None


def test_a_batch_retrying_a_transient_failure_stays_live_because_it_polls():
    watch = LoopWatch()
    watch.polled(batch_size=10)
    watch._batch_since = time.monotonic() - 600
    watch.polling()
    watch.polled()
    assert probes(watch).liveness()[0] is True


def test_partitions_from_statistics_with_lag_and_pauses():
    watch = LoopWatch()
    watch.assigned([TopicPartition("cmds", 0), TopicPartition("cmds", 1), TopicPartition("cmds", 2)])
    watch.paused([TopicPartition("cmds", 1)], True)
    unknown = -1001
    part = lambda app, committed, lo, hi: {"app_offset": app, "committed_offset": committed, "lo_offset": lo, "hi_offset": hi}  # noqa: E731
    watch.statistics(json.dumps({
        "cgrp": {"state": "up", "join_state": "steady"},
        "topics": {"cmds": {"partitions": {
            "0": part(7, 5, 0, 9), "1": part(unknown, unknown, 3, 10), "-1": part(unknown, unknown, unknown, unknown),
        }}},
    }))  # fmt: skip
    p0, p1, p2 = watch.partitions()
    assert (p0.position, p0.committed, p0.end, p0.lag, p0.paused) == (7, 5, 9, 4, False)
    # Nothing committed: behind by everything from the log start.
    assert (p1.position, p1.committed, p1.lag, p1.paused) == (None, None, 7, True)
    assert (p2.partition, p2.lag) == (2, None)
    assert watch.joined()
    watch.revoked([TopicPartition("cmds", 1)], "revoked")
    assert [p.partition for p in watch.partitions()] == [0, 2] and watch.rebalances["revoked"] == 1
