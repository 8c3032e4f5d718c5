"""A seeded simulator of guild traffic: the behaviour model's training and evaluation data.

Everything here is *simulated*: no real chat logs were available with author, channel and timing
data and spam labels. Each seed is one guild over about fifteen minutes of message time, with:

- **normal** members (old accounts, months of tenure) chatting in one or two favourite channels
  at a Poisson rate of one message every 1-6 minutes, with occasional links and mentions, plus
  4-10 **newcomers** (40% with accounts 5-60 minutes old, the rest up to 6 days; joined minutes
  ago) saying hello or something else once or twice, one message in eight with a link;
- **bursty but legitimate** traffic (label 0): an **announcement** with ``@everyone`` from a
  moderator followed by 20-60 members replying within a minute; an **event** channel where 30-60
  members all say "gg" within 20 s, some twice; a **busy channel** where 20-40 members chat every
  5-20 s for five minutes;
- an established **member who posts a spam text** once among ordinary chat (a forwarded scam, a
  "check out my channel"): label 0 here, because the label is *a spam actor*; that one text is
  the text model's to judge (see "Labels" below);
- **spam** (label 1): a **spam bot** (fresh account posting the same spam text every 2-6 s in one
  channel), a **cross-channel spammer** (the same text in 5-10 channels within 10-20 s; 30% of
  them are old, compromised accounts), a **join raid** (10-30 accounts created minutes to hours
  ago, joined minutes ago, each posting near-identical text 3-6 times in a minute across 1-3
  channels), a **mention flood** (5-20 user mentions per message, 3-6 messages) and a
  **drive-by spammer** (an account as fresh as a newcomer's, joined minutes ago, posting 1-3 spam
  texts minutes apart, mostly where newcomers post: behaviour alone barely tells it from one).

**Texts.** Without a text pool, chat is word salad from a small vocabulary and spam comes from a
few Discord-style templates (what the bench and the feature tests use). With a pool
(`training/behaviour/texts.py`: the SMS, YouTube and smishing sets, by split), 35% of ordinary
chat and half of newcomers' messages are real ham texts, and spam actors post real spam texts
(70% of spam bots and cross-channel spammers, every drive-by, a quarter of raids; the rest keep
the templates, which carry the links and invites real Discord spam has). "gg" and
congratulations stay templated. Text choices use their own random stream, so a seed's timing, authors and channels
are the same with or without a pool.

**Labels.** A message is labelled by its author: every message of a spam actor is spam,
including its first, which behaviour alone cannot always tell from a newcomer's hello; the
evaluation therefore also reports whether each spam actor is caught by its third message.

What it does not simulate: slow spam (one message an hour), accounts aged for months before
spamming, raids of varied, human-written text, and real guilds' channel structure. The model card
repeats this.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.types import Message
from training.behaviour.texts import TextDraw, TextPool

SCENARIOS: tuple[str, ...] = (
    "normal",
    "newcomer",
    "announcement",
    "event_gg",
    "busy_channel",
    "member_spam_text",
    "spam_bot",
    "cross_channel",
    "join_raid",
    "mention_flood",
    "drive_by",
)
SPAM_SCENARIOS = frozenset({"spam_bot", "cross_channel", "join_raid", "mention_flood", "drive_by"})
REAL_CHAT_SHARE = 0.35  # with a text pool: the share of ordinary chat that is a real ham text
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
    def __init__(self, seed: int, pool: TextPool | None = None) -> None:
        self.rng = random.Random(seed)
        # Text choices draw from their own stream: the same seed has the same timing, authors and
        # channels with or without a pool of real texts.
        self.trng = random.Random(f"texts-{seed}")
        self.texts = TextDraw(pool, self.trng) if pool is not None else None
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
        if self.texts is not None and self.trng.random() < REAL_CHAT_SHARE:
            text = self.texts.ham()
        roll = r.random()
        if roll < 0.04:
            text += " " + r.choice(_LEGIT_LINKS) + str(r.randint(1000, 99999))
        elif roll < 0.10:
            text = f"<@{r.randint(10**17, 10**18)}> " + text
        return text

    def newcomer_text(self, text: str) -> str:
        """A newcomer's message: `text`, or (with a pool, half the time) a real ham text; one in
        eight shares a link (their stream, a clip), as a first message sometimes does."""
        t = self.trng
        if self.texts is not None and t.random() < 0.5:
            text = self.texts.ham()
        if t.random() < 0.125:
            text += " " + t.choice(_LEGIT_LINKS) + str(t.randint(1000, 99999))
        return text

    def spam_text(self, real_share: float) -> str:
        """A spam text: a real one from the pool (with probability `real_share`), else a template."""
        t = self.trng
        if self.texts is not None and t.random() < real_share:
            return self.texts.spam()
        tmpl = t.choice(_SPAM_TEXTS)
        return tmpl.format(tld=t.choice(("xyz", "ru", "shop", "gift")), code=self.code(t))

    def old(self) -> tuple[float, float]:
        r = self.rng
        return r.uniform(60, 2000) * 86400, r.uniform(10, 700) * 86400

    def code(self, rng: random.Random | None = None) -> str:
        r = rng or self.rng
        return "".join(r.choice("abcdefghijkmnpqrstuvwxyz23456789") for _ in range(7))


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
    for _ in range(r.randint(4, 10)):
        t = r.uniform(0, DURATION_S - 60)
        # as fresh as raiders' accounts: a real person may sign up minutes before joining
        age = r.uniform(300, 3600) if r.random() < 0.4 else r.uniform(3600, 6 * 86400)
        a = g.author("newcomer", t, age_s=age, tenure_s=r.uniform(30, 600))
        g.emit(a, g.channels[0], t, g.newcomer_text(r.choice(_HELLOS)), "newcomer")
        if r.random() < 0.5:
            g.emit(a, g.channels[0], t + r.uniform(20, 120), g.newcomer_text(g.chatter()), "newcomer")


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
    text = g.spam_text(0.7)
    ch = r.choice(g.channels)
    for _ in range(r.randint(6, 15)):
        # mostly the same text, now and then with a fresh code or tag (as bots evade exact matching)
        g.emit(a, ch, t, text if r.random() < 0.7 else f"{text} {g.code()}", "spam_bot")
        t += r.uniform(2, 6)


def _cross_channel(g: _Guild) -> None:
    r = g.rng
    t = r.uniform(0, DURATION_S - 60)
    if r.random() < 0.3:
        age, tenure = g.old()  # a compromised old account
    else:
        age, tenure = r.uniform(300, 3 * 86400), r.uniform(30, 3600)
    a = g.author("xspam", t, age_s=age, tenure_s=tenure)
    text = g.spam_text(0.7)
    for ch in r.sample(g.channels, r.randint(5, 10)):
        g.emit(a, ch, t, text, "cross_channel")
        t += r.uniform(0.5, 2.5)


def _join_raid(g: _Guild) -> None:
    r = g.rng
    t0 = r.uniform(0, DURATION_S - 120)
    base = r.choice(_RAID_TEXTS).format(code=g.code())
    if g.texts is not None and g.trng.random() < 0.25:
        base = g.spam_text(1.0)
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


def _member_spam_text(g: _Guild) -> None:
    r = g.rng
    age, tenure = g.old()
    start = r.uniform(0, DURATION_S - 240)
    a = g.author("member", start, age_s=age, tenure_s=tenure)
    ch = r.choice(g.channels)
    t = start
    posted = r.randint(0, 2)  # ordinary messages before the spam text, and after it
    for k in range(posted + 1 + r.randint(0, 2)):
        g.emit(a, ch, t, g.spam_text(1.0) if k == posted else g.chatter(), "member_spam_text")
        t += r.expovariate(1 / 90)


def _drive_by(g: _Guild) -> None:
    """Looks like a newcomer by behaviour (the same account ages, join times and pace, often the
    same channel): only what it says gives it away."""
    r = g.rng
    t = r.uniform(0, DURATION_S - 200)
    age = r.uniform(300, 3600) if r.random() < 0.4 else r.uniform(3600, 6 * 86400)
    a = g.author("driveby", t, age_s=age, tenure_s=r.uniform(30, 600))
    chans = [g.channels[0]] if r.random() < 0.6 else r.sample(g.channels, r.randint(1, 3))
    text = g.spam_text(1.0)
    same = r.random() < 0.5
    for _ in range(r.randint(1, 3)):
        g.emit(a, r.choice(chans), t, text if same else g.spam_text(1.0), "drive_by")
        t += r.uniform(20, 180)


def simulate(seed: int, pool: TextPool | None = None) -> list[SimMessage]:
    """One guild's traffic for `seed`, in time order; the same seed (and pool) always gives the same
    stream. `pool`: real texts for chat and spam (see the module docstring), else word salad and
    templates."""
    g = _Guild(seed, pool)
    _normal(g)
    _newcomers(g)
    for scenario in (_announcement, _event_gg, _busy_channel):
        if g.rng.random() < 0.7:
            scenario(g)
    for _ in range(g.rng.randint(0, 3)):
        _member_spam_text(g)
    for scenario in (_spam_bot, _cross_channel, _join_raid, _mention_flood):
        for _ in range(g.rng.choice((0, 1, 1, 2))):
            scenario(g)
    # the actor the text side is for: more of them, or the model sees too few to learn from
    for _ in range(g.rng.randint(1, 4)):
        _drive_by(g)
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
