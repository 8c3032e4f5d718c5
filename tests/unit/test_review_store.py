"""The review queue's guarantees in the database itself, on SQLite and PostgreSQL: migration 0006
up and down, one claim wins a race, a claim expires, a verdict and its revision commit together."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from pipeline.errors import Conflict, NotFound
from pipeline.migrate import upgrade
from pipeline.review import Principal
from pipeline.store import Store
from pipeline.types import Action, Decision, Reason, decision_id_for


def held(tenant: str, mid: str, guild: str | None = "g1", category: str = "toxicity") -> Decision:
    return Decision(
        id=decision_id_for(tenant, mid), message_id=mid, guild_id=guild, action=Action.HOLD_FOR_REVIEW,
        scores={category: 0.9},
        reasons=[Reason(category=category, score=0.9, threshold=0.8, action=Action.HOLD_FOR_REVIEW, source="text",
                        text=f"{category} 0.90")],
    )


def mod(tenant: str, name: str, guilds: tuple[str, ...] = ("g1",)) -> Principal:
    return Principal(tenant_id=tenant, actor=f"reviewer:{name}", role="moderator", guilds=frozenset(guilds))


@pytest.fixture
def store(database_url: str) -> Store:
    upgrade(database_url)
    s = Store.from_url(database_url)
    yield s
    s.dispose()


def test_migration_0006_goes_up_and_down(database_url: str) -> None:
    upgrade(database_url)
    engine = sa.create_engine(database_url)
    names = set(sa.inspect(engine).get_table_names())
    assert {"review_items", "review_reports", "review_verdicts", "reviewers", "review_sessions"} <= names
    from alembic import command

    from pipeline.migrate import alembic_config

    command.downgrade(alembic_config(database_url), "0004")
    assert not {"review_items", "reviewers"} & set(sa.inspect(engine).get_table_names())
    upgrade(database_url)
    engine.dispose()


def test_held_decisions_are_queued_once_by_priority_with_self_harm_first(store: Store) -> None:
    t = store.tenants.ensure("acme")
    saved = store.decisions.save_many([(t, held(t, "a")), (t, held(t, "b", category="self_harm")),
                                       (t, held(t, "c", guild=None))])
    for _, d in saved:
        store.review.enqueue_decision(t, d)
    store.review.enqueue_decision(t, saved[0][1])  # delivered twice: still one item
    admin = Principal(tenant_id=t, actor="tenant:x:api_key", role="admin", guilds=None, via="api_key")
    items = store.review.list(admin)
    assert [i.message_id for i in items][0] == "b" and len(items) == 3
    assert {i.message_id: i.queue for i in items} == {"a": "guild", "b": "guild", "c": "platform"}
    assert [i.message_id for i in store.review.list(mod(t, "m"))] == ["b", "a"]  # no platform items
    assert store.review.list(mod(t, "m", ("g2",))) == []
    with pytest.raises(NotFound):
        store.review.get(mod(t, "m", ("g2",)), items[0].id)
    other = store.tenants.ensure("globex")
    with pytest.raises(NotFound):
        store.review.get(Principal(tenant_id=other, actor="x", role="admin", guilds=None), items[0].id)


def test_one_claim_wins_a_race_and_an_expired_claim_frees_the_item(store: Store) -> None:
    t = store.tenants.ensure("acme")
    (_, d), = store.decisions.save_many([(t, held(t, "m1"))])
    item = store.review.enqueue_decision(t, d)
    assert item is not None
    reviewers = [mod(t, f"r{i}") for i in range(8)]
    barrier = threading.Barrier(len(reviewers))

    def try_claim(p: Principal) -> str:
        barrier.wait()
        try:
            store.review.claim(p, item.id, ttl_s=0.5)
            return p.actor
        except Conflict:
            return ""

    with ThreadPoolExecutor(len(reviewers)) as pool:
        winners = [w for w in pool.map(try_claim, reviewers) if w]
    assert len(winners) == 1
    loser = next(p for p in reviewers if p.actor != winners[0])
    with pytest.raises(Conflict) as exc:
        store.review.resolve(loser, item.id, verdict="overturn", reason_code="false_positive", categories={})
    assert exc.value.code in ("review_item_claimed", "review_claim_required")
    time.sleep(0.6)  # the winner walked away: the claim expires
    assert store.review.claim(loser, item.id).claimed_by == loser.actor
    res = store.review.resolve(loser, item.id, verdict="overturn", reason_code="false_positive",
                               categories={"toxicity": False})
    assert res.decision is not None and res.decision.revision == 2 and res.decision.action == Action.ALLOW
    assert [r.cause for r in store.decisions.revisions(t, d.id)] == ["initial", "review"]
    events = store.outbox.for_decision(t, d.id, sink="review")
    assert [e.revision for e in events] == [1]  # the reviewer's revision is not queued again
    with pytest.raises(Conflict) as closed:
        store.review.claim(reviewers[0], item.id)
    assert closed.value.code == "review_item_closed"


def test_a_verdict_that_cannot_be_revised_leaves_nothing_behind(store: Store) -> None:
    """The verdict, the item's status and the revision share one transaction."""
    t = store.tenants.ensure("acme")
    (_, d), = store.decisions.save_many([(t, held(t, "m1"))])
    item = store.review.enqueue_decision(t, d)
    assert item is not None
    p = mod(t, "r1")
    store.review.claim(p, item.id)
    with store.engine.begin() as conn:  # the decision vanished (a bug, an operator's DELETE)
        conn.execute(sa.text("DELETE FROM decisions WHERE id = :i"), {"i": d.id})
    with pytest.raises(NotFound):
        store.review.resolve(p, item.id, verdict="uphold", reason_code="violates_policy", categories={})
    again = store.review.get(p, item.id)
    assert again.status == "open" and again.verdict is None
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM review_verdicts")).scalar() == 0
