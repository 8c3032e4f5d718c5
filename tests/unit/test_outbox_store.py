"""Outbox claims on the embedded SQLite store: fair across tenants, in revision order, leased."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.migrate import upgrade
from pipeline.store import Store
from pipeline.types import Action, Decision, decision_id_for


def decision(tenant: str, mid: str) -> Decision:
    return Decision(id=decision_id_for(tenant, mid), message_id=mid, action=Action.ALLOW, scores={})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    url = f"sqlite:///{tmp_path}/h.db"
    upgrade(url)
    s = Store.from_url(url)
    yield s
    s.dispose()


def test_one_tenants_backlog_does_not_starve_another(store: Store) -> None:
    a, b = store.tenants.ensure("a"), store.tenants.ensure("b")
    for t in (a, b):
        store.webhooks.set(t, "https://chat.example/hook")
    store.decisions.save_many([(a, decision(a, f"a{i}")) for i in range(300)])  # older
    store.decisions.save_many([(b, decision(b, f"b{i}")) for i in range(3)])
    got = store.outbox.claim_due("webhook", owner="d1", lease_s=60, limit=50, default_per_tenant=4)
    assert sum(e.tenant_id == a for e in got) == 4 and sum(e.tenant_id == b for e in got) == 3
    # a tenant with no free slot is not claimed at all; leased events are not claimed twice
    again = store.outbox.claim_due("webhook", owner="d2", lease_s=60, limit=50, exclude_tenants=[a],
                                   default_per_tenant=4)
    assert again == []
    more = store.outbox.claim_due("webhook", owner="d2", lease_s=60, limit=50, per_tenant={a: 2},
                                  default_per_tenant=4)
    assert len(more) == 2 and not {e.id for e in more} & {e.id for e in got}


def test_a_later_revision_waits_for_the_earlier_one(store: Store) -> None:
    t = store.tenants.ensure("a")
    store.webhooks.set(t, "https://chat.example/hook")
    store.decisions.save_many([(t, decision(t, "m"))])
    store.decisions.revise(t, decision(t, "m"), cause="override", actor="x")
    first = store.outbox.claim_due("webhook", owner="d", lease_s=0.0, limit=10)
    assert [e.revision for e in first] == [1]
    store.outbox.record_attempt(first[0], owner="d", ok=False, status_code=500, error="down", duration_ms=1,
                                retry_at=None)  # revision 1 dead: revision 2 may go
    second = store.outbox.claim_due("webhook", owner="d", lease_s=60, limit=10)
    assert [e.revision for e in second] == [2]


def test_a_message_decided_on_the_sync_path_and_then_queued_is_not_left_pending(store: Store) -> None:
    """Found by schemathesis: POST /v1/moderate, then POST /v1/messages with the same id, left the
    message pending forever (its decision existed, so saving it again marked nothing decided)."""
    from pipeline.types import Message

    t = store.tenants.ensure("a")
    store.decisions.save_many([(t, decision(t, "m1"))], path="sync")
    row_id, created = store.messages.insert(t, Message(id="m1", text="hi"))
    assert created
    assert store.decisions.save_many([(t, decision(t, "m1"))]) == []  # the worker's attempt: no new decision
    assert store.messages.status(t, "m1") == "decided"
    assert store.messages.claim_stale_pending(0.0) == []


def test_the_same_decision_twice_in_one_batch_is_stored_once_with_the_rest(store: Store) -> None:
    """A client retrying POST /v1/moderate within milliseconds puts two copies of one decision in
    one write-behind batch; that batch (with other callers' decisions) was lost to a unique-key
    error on the second copy's revision 1."""
    t = store.tenants.ensure("a")
    saved = store.decisions.save_many([(t, decision(t, "m1")), (t, decision(t, "m1")), (t, decision(t, "m2"))],
                                      path="sync")
    assert [d.message_id for _, d in saved] == ["m1", "m2"]
    assert store.decisions.get(t, "m1") is not None and store.decisions.get(t, "m2") is not None
    assert [r.revision for r in store.decisions.revisions(t, decision_id_for(t, "m1"))] == [1]
