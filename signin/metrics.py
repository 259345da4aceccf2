"""Prometheus metrics of this process, at /metrics. Outcome labels are the outcome codes themselves."""

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

registry = CollectorRegistry(auto_describe=True)

signins = Counter("pta_signin", "Sign-in attempts by outcome", ["outcome", "channel"], registry=registry)
queue_seconds = Histogram(
    "pta_signin_queue_seconds", "Time a sign-in waited for an agent slot (every agent of its tenant busy)",
    registry=registry, buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
)
signin_seconds = Histogram(
    "pta_signin_seconds", "Time from password to answer", ["channel"], registry=registry,
    buckets=(0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15),
)


class HandOffCollector:
    """Live state of the hand-off in this process: what must return to zero when traffic stops."""

    def collect(self):
        from agents.connections import handshakes, local_agents, openings
        from agents.handoff.relay import reply_channel
        from agents.queue import slot_queues

        waiters = GaugeMetricFamily("pta_handoff_reply_waiters", "Requests relayed to another node awaiting answer")
        waiters.add_metric([], len(reply_channel.waiters))
        agents = GaugeMetricFamily("pta_agents_local", "Agents connected to this process")
        agents.add_metric([], len(local_agents))
        in_flight = GaugeMetricFamily("pta_agent_in_flight", "Requests in flight per local agent", labels=["agent"])
        for consumer in local_agents.all():
            in_flight.add_metric([consumer.agent_id], consumer.in_flight)
        queued = GaugeMetricFamily("pta_signin_queue_length", "Sign-ins waiting for an agent slot, per tenant",
                                   labels=["tenant"])
        oldest = GaugeMetricFamily("pta_signin_queue_oldest_seconds", "How long the first in line has waited",
                                   labels=["tenant"])
        for tenant, length in slot_queues.lengths().items():
            queued.add_metric([tenant], length)
            oldest.add_metric([tenant], slot_queues.oldest_wait(tenant))
        admission = [
            ("pta_agent_handshakes_in_progress", "Agent hellos being verified", handshakes.in_progress),
            ("pta_agent_handshakes_waiting", "Agent hellos waiting for a place to be verified", handshakes.waiting),
            ("pta_agent_handshake_interval_seconds", "Time between two handshakes ending while busy (EWMA)",
             handshakes.interval),
            ("pta_agent_openings_in_progress", "Agent connections opened and not yet welcomed", openings.in_progress),
        ]
        gauges = []
        for name, text, value in admission:
            gauges.append(GaugeMetricFamily(name, text))
            gauges[-1].add_metric([], value)
        refused = CounterMetricFamily("pta_agent_handshakes_refused", "Agent hellos told to try later (4008)")
        refused.add_metric([], handshakes.refused)
        waited = CounterMetricFamily("pta_agent_handshakes_waited", "Agent hellos that waited for a place and got one")
        waited.add_metric([], handshakes.waited)
        openings_refused = CounterMetricFamily("pta_agent_openings_refused",
                                               "Agent connections closed at the opening with TRY_LATER (4008)")
        openings_refused.add_metric([], openings.refused)
        yield from (waiters, agents, in_flight, queued, oldest, *gauges, refused, waited, openings_refused)


registry.register(HandOffCollector())


def metrics_text() -> bytes:
    return generate_latest(registry)
