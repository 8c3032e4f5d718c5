"""The store under concurrent workers on the real PostgreSQL: leasing never deadlocks or double-sends,
and concurrent revisions of one message get consecutive numbers."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime

import pytest

from pipeline.migrate import upgrade
from pipeline.store import Store
from pipeline.types import Action, Decision, decision_id_for

pytestmark = pytest.mark.integration


def decision(tenant: str, mid: str, action: Action = Action.ALLOW) -> Decision:
    return Decision(id=decision_id_for(tenant, mid), message_id=mid, action=action, scores={})


@pytest.fixture
def store(pg_url: str) -> Store:
    upgrade(pg_url)
    s = Store.from_url(pg_url)
    yield s
    s.dispose()


def test_drainers_lease_disjoint_events_without_deadlock(store: Store) -> None:
    """Six drainers claim and record at once while decisions keep arriving: every event is leased
    exactly once and no transaction fails (the old lease loop deadlocked under this)."""
    tenants = [store.tenants.ensure(f"t{i}") for i in range(3)]
    for t in tenants:
        store.webhooks.set(t, "https://chat.example/hook")
    n = 900
    errors: list[BaseException] = []
    claimed: Counter[int] = Counter()
    lock = threading.Lock()
    writing_done = threading.Event()

    def writer() -> None:
        try:
            for start in range(0, n, 50):
                store.decisions.save_many(
                    [(tenants[i % 3], decision(tenants[i % 3], f"m{i}")) for i in range(start, start + 50)]
                )
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            writing_done.set()

    def drainer(owner: str) -> None:
        try:
            idle = 0
            while idle < 3:
                events = store.outbox.claim_due("webhook", owner=owner, lease_s=60, limit=20, default_per_tenant=8)
                if not events:
                    idle += 1 if writing_done.is_set() else 0
                    continue
                idle = 0
                with lock:
                    claimed.update(e.id for e in events)
                for e in events:
                    store.outbox.record_attempt(e, owner=owner, ok=True, status_code=204, error=None,
                                                duration_ms=1.0, retry_at=None)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=writer)] + [threading.Thread(target=drainer, args=(f"d{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert len(claimed) == n and set(claimed.values()) == {1}
    assert store.outbox.counts("webhook") == {"delivered": n}


def test_concurrent_revisions_of_one_message_are_numbered_consecutively(store: Store) -> None:
    t = store.tenants.ensure("acme")
    store.webhooks.set(t, "https://chat.example/hook")
    store.decisions.save_many([(t, decision(t, "m1", Action.BLOCK))])
    errors: list[BaseException] = []

    def revise(actor: str) -> None:
        try:
            for _ in range(15):
                store.decisions.revise(t, decision(t, "m1", Action.FLAG), cause="review", actor=actor)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=revise, args=(f"r{i}",)) for i in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors == []
    history = store.decisions.revisions(t, "m1")
    assert [r.revision for r in history] == list(range(1, 47))
    assert store.decisions.get(t, "m1").revision == 46  # type: ignore[union-attr]
    events = store.outbox.for_decision(t, "m1")
    assert [e.revision for e in events] == list(range(1, 47))
    # in order: only the lowest pending revision of a decision is ever due
    due = store.outbox.claim_due("webhook", owner="x", lease_s=60, limit=100)
    assert [e.revision for e in due] == [1]
    assert datetime.now(UTC) > history[0].created_at
