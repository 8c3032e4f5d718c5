"""Sinks: where decision revisions go. Each drains its own events from the outbox with its own retries.

- `webhook.WebhookSink`: signed HTTP POSTs to the tenant's chat service.
- `drainer.OutboxDrainer`: the loop that leases due events and runs a sink's attempts, with
  per-tenant concurrency caps and circuit breakers, on its own thread and event loop, so that no
  receiver can stall a decision or another tenant's deliveries.

A new sink (the review queue, a chat-core module) is a class with the `Sink` shape plus a route in
`pipeline.store.outbox.OutboxRouter`.
"""

from pipeline.sinks.base import DeliveryResult, Sink, backoff_delay
from pipeline.sinks.drainer import OutboxDrainer
from pipeline.sinks.webhook import WebhookSink, webhook_body

__all__ = ["DeliveryResult", "OutboxDrainer", "Sink", "WebhookSink", "backoff_delay", "webhook_body"]
