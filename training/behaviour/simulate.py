"""A seeded simulator of guild traffic: the behaviour model's training and evaluation data.

Everything here is *simulated*: no real chat logs were available with author, channel and timing
data and spam labels. Each seed is one guild over about fifteen minutes of message time, with:

- **normal** members (old accounts, months of tenure) chatting in one or two favourite channels
  at a Poisson rate of one message every 1-6 minutes, with occasional links and mentions, plus a
  few **newcomers** (accounts days old, joined minutes ago) saying hello once or twice;
- **bursty but legitimate** traffic (label 0): an **announcement** with ``@everyone`` from a
  moderator followed by 20-60 members replying within a minute; an **event** channel where 30-60
  members all say "gg" within 20 s, some twice; a **busy channel** where 20-40 members chat every
  5-20 s for five minutes;
- **spam** (label 1): a **spam bot** (fresh account posting the same link text every 2-6 s in one
  channel), a **cross-channel spammer** (the same invite in 5-10 channels within 10-20 s; 30% of
  them are old, compromised accounts), a **join raid** (10-30 accounts created minutes to hours
  ago, joined minutes ago, each posting near-identical text 3-6 times in a minute across 1-3
  channels) and a **mention flood** (5-20 user mentions per message, 3-6 messages).

Every message of a spam actor is labelled spam, including its first, which behaviour alone
cannot always tell from a newcomer's hello; the evaluation therefore also reports whether each
spam actor is caught by its third message. What it does not simulate: slow spam (one message an
hour), accounts aged for months before spamming, raids of varied, human-written text, and real
guilds' channel structure. The model card repeats this.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.types import Message

SCENARIOS: tuple[str, ...] = (
    "normal",
    "newcomer",
    "announcement",
    "event_gg",
    "busy_channel",
    "spam_bot",
    "cross_channel",
    "join_raid",
    "mention_flood",
)
SPAM_SCENARIOS = frozenset({"spam_bot", "cross_channel", "join_raid", "mention_flood"})
BASE_TIME = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
DURATION_S = 900

_WORDS = (
    "anyone playing tonight? i think the new patch broke my build lol what do you think about the update "
    "did you see the stream yesterday that boss fight was insane can someone help me with the quest "
    "thanks man appreciate it brb dinner haha yeah same here no way that's wild good morning everyone "
    "is the server down for anyone else i'm stuck on level twelve try the other route it's faster "
    "nice clip honestly the best match this week see you all later"
).split()
_LEGIT_LINKS = ("https://youtube.com/watch?v=", "https://github.com/heron/", "https://store.steampowered.com/app/")
_HELLOS = ("hi everyone!", "hello, just joined", "hey all, new here", "hi! found this server through a friend")
_CONGRATS = ("congrats!!", "lets gooo", "hype", "finally!", "awesome news", "gg", "pog", "can't wait", "nice")
_GG = ("gg", "GG", "gg wp", "ggs", "gg!", "GG WP", "gg ez")
_SPAM_TEXTS = (
    "FREE NITRO 🎁 claim now at discord-gift.{tld}/{code}",
    "get free steam skins here → steamcommunlty.{tld}/trade/{code}",
    "earn $500/day from home, dm me or join discord.gg/{code}",
)
_RAID_TEXTS = ("hi all", "hello everyone join discord.gg/{code}", "raid time lol", "@everyone check this out")


@dataclass(frozen=True)
class SimMessage:
    """One simulated message with its ground truth."""

    message: Message
    label: int  # 1 spam, 0 legitimate
    scenario: str
    actor: str  # the author id (per seed unique)


class _Guild:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.guild = f"g{seed}"
        self.channels = [f"c{seed}_{i}" for i in range(10)]
        self.out: list[SimMessage] = []
        self.n = 0

    def author(self, kind: str, t: float, *, age_s: float, tenure_s: float, roles: list[str] | None = None) -> dict:
        self.n += 1
        at = BASE_TIME + timedelta(seconds=t)
        return {
            "id": f"u{self.seed}_{kind}_{self.n}",
            "created_at": (at - timedelta(seconds=age_s)).isoformat(),
            "joined_at": (at - timedelta(seconds=tenure_s)).isoformat(),
            "roles": roles or [],
        }

    def emit(self, author: dict, channel: str, t: float, text: str, scenario: str) -> None:
        label = int(scenario in SPAM_SCENARIOS)
        msg = Message(
            id=f"s{self.seed}_{len(self.out)}",
            guild_id=self.guild,
            channel_id=channel,
            author=author,
            text=text,
            timestamp=BASE_TIME + timedelta(seconds=round(t, 3)),
        )
        self.out.append(SimMessage(msg, label, scenario, author["id"]))

    def chatter(self) -> str:
        r = self.rng
        text = " ".join(r.choice(_WORDS) for _ in range(r.randint(2, 14)))
        roll = r.random()
        if roll < 0.04:
            text += " " + r.choice(_LEGIT_LINKS) + str(r.randint(1000, 99999))
        elif roll < 0.10:
            text = f"<@{r.randint(10**17, 10**18)}> " + text
        return text

    def old(self) -> tuple[float, float]:
        r = self.rng
        return r.uniform(60, 2000) * 86400, r.uniform(10, 700) * 86400

    def code(self) -> str:
        return "".join(self.rng.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(7))


def _normal(g: _Guild) -> None:
    r = g.rng
    for _ in range(r.randint(30, 50)):
        age, tenure = g.old()
        start = r.uniform(0, DURATION_S)
        a = g.author("normal", start, age_s=age, tenure_s=tenure)
        favs = r.sample(g.channels, r.randint(1, 2))
        t = start
        rate = r.uniform(60, 360)
        while t < DURATION_S:
            g.emit(a, r.choice(favs), t, g.chatter(), "normal")
            # now and then a quick follow-up (people type in bursts), else the user's usual pace
            t += r.uniform(2, 15) if r.random() < 0.25 else r.expovariate(1 / rate)


def _newcomers(g: _Guild) -> None:
    r = g.rng
    for _ in range(r.randint(2, 5)):
        t = r.uniform(0, DURATION_S - 60)
        a = g.author("newcomer", t, age_s=r.uniform(3600, 6 * 86400), tenure_s=r.uniform(30, 600))
        g.emit(a, g.channels[0], t, r.choice(_HELLOS), "newcomer")
        if r.random() < 0.5:
            g.emit(a, g.channels[0], t + r.uniform(20, 120), g.chatter(), "newcomer")


def _announcement(g: _Guild) -> None:
    r = g.rng
    t0 = r.uniform(60, DURATION_S - 120)
    mod = g.author("mod", t0, age_s=900 * 86400, tenure_s=800 * 86400, roles=["moderator"])
    g.emit(
        mod,
        g.channels[1],
        t0,
        "@everyone season 3 starts tomorrow! patch notes: https://github.com/heron/notes",
        "announcement",
    )
    for _ in range(r.randint(20, 60)):
        age, tenure = g.old()
        t = t0 + r.uniform(2, 60)
        a = g.author("member", t, age_s=age, tenure_s=tenure)
        g.emit(a, g.channels[1], t, r.choice(_CONGRATS), "announcement")
        if r.random() < 0.3:
            g.emit(a, g.channels[1], t + r.uniform(3, 30), r.choice(_CONGRATS), "announcement")


def _event_gg(g: _Guild) -> None:
    r = g.rng
    t0 = r.uniform(60, DURATION_S - 60)
    for _ in range(r.randint(30, 60)):
        age, tenure = g.old()
        if r.random() < 0.15:  # a few members who joined for the event
            age, tenure = r.uniform(2, 30) * 86400, r.uniform(600, 86400)
        t = t0 + r.uniform(0, 20)
        a = g.author("fan", t, age_s=age, tenure_s=tenure)
        g.emit(a, g.channels[2], t, r.choice(_GG), "event_gg")
        if r.random() < 0.3:
            g.emit(a, g.channels[2], t + r.uniform(1, 15), r.choice(_GG), "event_gg")


def _busy_channel(g: _Guild) -> None:
    r = g.rng
    t0 = r.uniform(0, DURATION_S - 300)
    for _ in range(r.randint(20, 40)):
        age, tenure = g.old()
        t = t0 + r.uniform(0, 30)
        a = g.author("busy", t, age_s=age, tenure_s=tenure)
        while t < t0 + 300:
            g.emit(a, g.channels[3], t, g.chatter(), "busy_channel")
            t += r.uniform(5, 20)


def _spam_bot(g: _Guild) -> None:
    r = g.rng
    t = r.uniform(0, DURATION_S - 120)
    a = g.author("bot", t, age_s=r.uniform(60, 2 * 86400), tenure_s=r.uniform(10, 900))
    tmpl = r.choice(_SPAM_TEXTS)
    tld = r.choice(("xyz", "ru", "shop", "gift"))
    code = g.code()
    ch = r.choice(g.channels)
    for _ in range(r.randint(6, 15)):
        text = tmpl.format(tld=tld, code=code if r.random() < 0.7 else g.code())
        g.emit(a, ch, t, text, "spam_bot")
        t += r.uniform(2, 6)


def _cross_channel(g: _Guild) -> None:
    r = g.rng
    t = r.uniform(0, DURATION_S - 60)
    if r.random() < 0.3:
        age, tenure = g.old()  # a compromised old account
    else:
        age, tenure = r.uniform(300, 3 * 86400), r.uniform(30, 3600)
    a = g.author("xspam", t, age_s=age, tenure_s=tenure)
    text = r.choice(_SPAM_TEXTS).format(tld=r.choice(("xyz", "ru", "shop")), code=g.code())
    for ch in r.sample(g.channels, r.randint(5, 10)):
        g.emit(a, ch, t, text, "cross_channel")
        t += r.uniform(0.5, 2.5)


def _join_raid(g: _Guild) -> None:
    r = g.rng
    t0 = r.uniform(0, DURATION_S - 120)
    base = r.choice(_RAID_TEXTS).format(code=g.code())
    for _ in range(r.randint(10, 30)):
        t = t0 + r.uniform(0, 40)
        a = g.author("raider", t, age_s=r.uniform(120, 12 * 3600), tenure_s=r.uniform(5, 300))
        chans = r.sample(g.channels, r.randint(1, 3))
        for _ in range(r.randint(3, 6)):
            text = base + r.choice(("", "!", "!!", " :)", " lol", "?"))
            g.emit(a, r.choice(chans), t, text, "join_raid")
            t += r.uniform(1, 12)


def _mention_flood(g: _Guild) -> None:
    r = g.rng
    t = r.uniform(0, DURATION_S - 60)
    a = g.author("flood", t, age_s=r.uniform(300, 5 * 86400), tenure_s=r.uniform(30, 7200))
    ch = r.choice(g.channels)
    for _ in range(r.randint(3, 6)):
        mentions = " ".join(f"<@{r.randint(10**17, 10**18)}>" for _ in range(r.randint(5, 20)))
        g.emit(a, ch, t, mentions + " " + r.choice(("wake up", "look", "free stuff", "")), "mention_flood")
        t += r.uniform(1, 8)


def simulate(seed: int) -> list[SimMessage]:
    """One guild's traffic for `seed`, in time order; the same seed always gives the same stream."""
    g = _Guild(seed)
    _normal(g)
    _newcomers(g)
    for scenario in (_announcement, _event_gg, _busy_channel):
        if g.rng.random() < 0.7:
            scenario(g)
    for scenario in (_spam_bot, _cross_channel, _join_raid, _mention_flood):
        for _ in range(g.rng.choice((0, 1, 1, 2))):
            scenario(g)
    return sorted(g.out, key=lambda s: (s.message.timestamp, s.message.id))


def write_jsonl(seed: int, path: str) -> int:
    """Write one seed's stream as a recorded log (`heron moderate --input` reads it); returns its size."""
    stream = simulate(seed)
    with open(path, "w", encoding="utf-8") as f:
        for s in stream:
            f.write(s.message.model_dump_json(exclude={"attachments", "context"}) + "\n")
    return len(stream)


if __name__ == "__main__":  # python -m training.behaviour.simulate SEED OUT.jsonl
    import sys

    print(write_jsonl(int(sys.argv[1]), sys.argv[2]), "messages")
