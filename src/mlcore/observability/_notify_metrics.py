"""The notifier's Prometheus counters (bounded labels: target and outcome)."""

from __future__ import annotations

from prometheus_client import Counter

DELIVERIES = Counter(
    "notify_deliveries",
    "Notification sends by destination and outcome (delivered, retry, failed)",
    ["target", "outcome"],
)
STUCK = Counter(
    "notify_delivery_stuck",
    "Sends of notifications already tried stuck_after_attempts times or more",
    ["target"],
)

#: Both counters, for an endpoint's own registry (``mlcore serve``'s).
NOTIFY_METRICS = (DELIVERIES, STUCK)
