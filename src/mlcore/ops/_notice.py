"""Tell serving that what is in force changed: ``deployed.json`` in the serving folder (which
`mlcore serve` watches, then moves its workers by hot swap) and, with REDIS_URL, the same
notice on the publish flow's key and channel."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from mlcore.config import AppConfig
from mlcore.data import write_atomic
from mlcore.serving import serving_dir

log = logging.getLogger("mlcore.ops")
SERVING_CHANNEL = "core:models:deployed"  # the publish flow's (mlcore.flows._publish)
REDIS_TIMEOUT_S = 5.0


def notify_serving(
    cfg: AppConfig, event: str, *, model_version: str, model_path: str,
    theta: tuple[float, float], config_version: str | None = None,
) -> list[str]:  # fmt: skip
    """Write the notice (atomically) and send it on Redis; returns where it went. The file
    is what the supervisor reads: Redis failing is logged, not raised (the change stands)."""
    notice: dict[str, Any] = {
        "event": event, "model_version": model_version, "model_path": model_path,
        "theta1": theta[0], "theta2": theta[1], "issued_at": datetime.now(UTC).isoformat(),
    }  # fmt: skip
    if config_version is not None:
        notice["config_version"] = config_version
    path = serving_dir(cfg) / "deployed.json"
    write_atomic(path, (json.dumps(notice, sort_keys=True, indent=2) + "\n").encode())
    sent = [str(path)]
    if cfg.env.redis_url:
        import redis

        try:
            client = redis.Redis.from_url(
                cfg.env.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                socket_timeout=REDIS_TIMEOUT_S,
            )  # fmt: skip
            try:
                body = json.dumps(notice, sort_keys=True)
                client.set(SERVING_CHANNEL, body)
                client.publish(SERVING_CHANNEL, body)
                sent.append(f"redis:{SERVING_CHANNEL}")
            finally:
                client.close()
        except (redis.RedisError, OSError) as exc:
            log.warning("serving notice not sent on Redis (%s); %s has it", exc, path)
    return sent
