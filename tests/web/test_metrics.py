"""GET /metrics: Prometheus text with state gauges, HTTP and worker metrics, no ids."""

from __future__ import annotations

import re
from typing import Any

from prometheus_client.parser import text_string_to_metric_families


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics(api: Any) -> None:
    key = await api.create_key()
    await api.create_key(origin="EXTERNAL")
    resp = await api.client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    text = await resp.text()
    values = samples(text)
    assert values[("kms_keys", (("state", "ACTIVE"),))] == 1
    assert values[("kms_keys", (("state", "PENDING_IMPORT"),))] == 1
    assert values[("kms_queue_depth", (("kind", "ready"), ("queue", "create")))] == 0
    assert ("kms_timers_pending", (("kind", "delete_key"),)) in values
    assert any(
        name == "kms_http_requests_total" and dict(labels).get("route") == "/v1/keys/{key_id}"
        for name, labels in values
    )
    assert any(name == "dramatiq_messages_total" for name, _ in values)
    assert any(
        name == "kms_operations_total" and dict(labels) == {"kind": "create_key", "status": "SUCCEEDED"}
        for name, labels in values
    )
    assert any(name.startswith("kms_operation_duration_seconds") for name, _ in values)
    # no high-cardinality labels: no key or operation id anywhere
    assert key["id"] not in text
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", text)
