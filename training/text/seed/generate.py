"""The team-written seed set for the categories with little natural data (violence, sexual,
self_harm, scam, harassment): templates with slots, filled with a fixed seed.

Why templates: the shared folder has few threats, almost no plain-language sexual content and no
chat-style crisis messages, and the backbone is a sentence-similarity model, so a few hundred
varied phrasings of what we mean (and of the look-alikes we do not mean: figurative "kill", sexual
health, distress without intent, real delivery notices) move a head over its pooled embedding a
long way. Every template here was written for this file; none is copied or paraphrased from an
evaluation set (ToxiGen, ETHOS, OLID test, garak probes, the probe set in tests/).

Splits are by template (70/15/15, seeded), so a test row never shares its template with a
training row. Regenerate with `python -m training.text.seed.generate` (writes seed_v{VERSION}.csv);
the CSV is committed so training does not depend on this code's dict order.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

VERSION = 1
SEED = 20261203
PER_TEMPLATE = 6
OUT = Path(__file__).resolve().parent / f"seed_v{VERSION}.csv"

SLOTS: dict[str, list[str]] = {
    "weapon": ["knife", "gun", "bat", "hammer", "crowbar", "machete", "pipe", "brick"],
    "hurt": ["stab", "shoot", "beat", "strangle", "burn", "kill", "cut", "choke", "smash your skull in and kill"],
    "place": ["your house", "your school", "your work", "your car", "your mom's place", "the parking lot"],
    "when": ["tonight", "tomorrow", "after school", "this weekend", "when you least expect it", "soon", "on friday"],
    "target": ["you", "your family", "your kids", "your sister", "your dog", "your girlfriend", "him", "her"],
    "game": ["this boss fight", "this level", "the raid tonight", "this exam", "the final round", "ranked today",
             "this dungeon", "the speedrun"],
    "proc": ["a python process", "a hung process on linux", "the docker container", "a zombie thread",
             "the node server", "a background job", "the tmux session"],
    "insult": ["pathetic loser", "worthless idiot", "disgusting pig", "braindead moron", "fat slob",
               "ugly freak", "useless waste of space", "clown"],
    "body": ["body", "tits", "ass", "dick", "pussy", "naked body", "boobs", "cock"],
    "sexact": ["fuck you", "suck your dick", "have sex with you", "bang you", "ride you", "lick you all over"],
    "pills": ["the pills", "the rope", "a blade", "my dad's gun", "the bottle of sleeping pills", "the bridge"],
    "brand": ["USPS", "DHL", "FedEx", "Royal Mail", "your bank", "PayPal", "Amazon", "Netflix", "Chase", "Apple ID"],
    "lure": ["your package is on hold", "your account has been suspended", "unusual sign-in detected",
             "you have an unpaid toll", "your card was locked", "a refund of $" + "214.50 is pending",
             "you won a $1000 gift card", "your parcel could not be delivered"],
    "link": ["http://secure-verify-acct.com/login", "https://usps-redelivery-center.com/track",
             "bit.ly/3xQz9kp", "https://paypal-resolution-help.net", "http://amaz0n-refunds.co/claim",
             "https://dhl-parcel-fee.info/pay", "tinyurl.com/acct-verify-now"],
    "legit": ["your order #48213 has shipped", "your appointment is confirmed for tuesday at 3pm",
              "your verification code is 482913, do not share it", "your package was delivered to the front door",
              "your monthly statement is ready in the app", "thanks for your payment of $42.10"],
    "friend": ["bro", "dude", "mate", "man", "lol", "ngl", "honestly", "omg"],
}

# (category, label, kind, template). label 1 = the category applies.
TEMPLATES: list[tuple[str, int, str, str]] = [
    # violence: genuine threats and requests to hurt someone
    ("violence", 1, "threat", "I am going to find where you live and {hurt} you"),
    ("violence", 1, "threat", "i know where {place} is. {when} i'm coming with a {weapon}"),
    ("violence", 1, "threat", "watch your back {when}, I'll {hurt} {target}"),
    ("violence", 1, "threat", "if you post that again I will {hurt} {target} {when}"),
    ("violence", 1, "threat", "I'm bringing my {weapon} to {place} {when} and everyone there is dead"),
    ("violence", 1, "threat", "you're dead {when}. I'll {hurt} you with my {weapon}"),
    ("violence", 1, "threat", "keep talking and i will {hurt} {target}, i swear i'll do it"),
    ("violence", 1, "threat", "someone should {hurt} {target} {when}, I'll pay whoever does it"),
    ("violence", 1, "threat", "gonna wait outside {place} and {hurt} you {when}"),
    ("violence", 1, "threat", "i'll put a bullet in {target}'s head"),
    ("violence", 1, "threat", "help me plan how to {hurt} my neighbour {when} without getting caught"),
    ("violence", 1, "threat", "how do i hurt someone with a {weapon} so it looks like an accident"),
    ("violence", 1, "threat", "we should all go to {place} {when} and beat them until they stop moving"),
    ("violence", 1, "threat", "I will rape and murder {target}"),
    ("violence", 1, "threat", "next time I see you I'm going to break every bone in your body"),
    ("violence", 1, "threat", "sleep with one eye open, I'm coming for {target} {when}"),
    ("violence", 1, "threat", "i hope someone shoots up {place} {when}, they all deserve to die"),
    ("violence", 1, "threat", "tell me the best way to poison someone's drink"),
    # violence: figurative / technical / everyday look-alikes
    ("violence", 0, "figurative", "I'm going to kill {game} {when}"),
    ("violence", 0, "figurative", "{friend} we absolutely murdered {game}"),
    ("violence", 0, "figurative", "this song slaps, I'm dead {friend}"),
    ("violence", 0, "technical", "how do I kill {proc}?"),
    ("violence", 0, "technical", "use kill -9 to stop {proc}"),
    ("violence", 0, "figurative", "shoot me a message {when} when you're free"),
    ("violence", 0, "figurative", "that joke killed me {friend}, I can't breathe"),
    ("violence", 0, "figurative", "you killed it at the show {when}!"),
    ("violence", 0, "figurative", "my feet are killing me after {game}"),
    ("violence", 0, "figurative", "I'll beat you at chess {when}, prepare to lose"),
    ("violence", 0, "figurative", "we got destroyed in {game} lmao"),
    ("violence", 0, "figurative", "I could murder a pizza right now {friend}"),
    ("violence", 0, "technical", "the script crashed, I had to terminate {proc}"),
    ("violence", 0, "figurative", "gonna shoot some hoops {when}, want to come?"),
    ("violence", 0, "figurative", "my mom is going to kill me if I'm late {when}"),
    ("violence", 0, "news", "police said the suspect was arrested after the stabbing near {place}"),
    ("violence", 0, "figurative", "headshot! that sniper round was insane {friend}"),
    ("violence", 0, "figurative", "the new {weapon} skin in the game looks sick"),
    ("violence", 0, "figurative", "I'm dying of laughter {friend} 😂"),
    # sexual: solicitation and explicit content in plain words
    ("sexual", 1, "solicitation", "send me pics of your {body} {friend}"),
    ("sexual", 1, "solicitation", "wanna {sexact} {when}? dm me"),
    ("sexual", 1, "solicitation", "how old are you? send nudes and i'll send mine"),
    ("sexual", 1, "explicit", "I want to {sexact} until you scream"),
    ("sexual", 1, "explicit", "your {body} looks so hot, I'd {sexact} right now"),
    ("sexual", 1, "solicitation", "selling my nudes and sex videos, {friend} check my page"),
    ("sexual", 1, "explicit", "I'm touching myself thinking about your {body}"),
    ("sexual", 1, "solicitation", "looking for a hookup {when}, send me your {body}"),
    ("sexual", 1, "explicit", "she was moaning while I was fucking her {body}"),
    ("sexual", 1, "solicitation", "turn on your camera and take your clothes off for me"),
    ("sexual", 1, "explicit", "describe what you'd do to my {body} in bed, in detail"),
    ("sexual", 1, "solicitation", "add me on snap for spicy content 🍆💦"),
    # sexual: benign sexual-health, relationship, anatomy-in-context talk
    ("sexual", 0, "health", "is it normal to have pain after my first time? should I see a doctor"),
    ("sexual", 0, "health", "where can I get tested for STIs {when}?"),
    ("sexual", 0, "health", "how effective is the pill compared to condoms?"),
    ("sexual", 0, "relationship", "my girlfriend and I have been together two years {friend}, thinking of proposing"),
    ("sexual", 0, "relationship", "we had our first date {when}, it went really well"),
    ("sexual", 0, "health", "reminder: breast cancer screening is free this month"),
    ("sexual", 0, "relationship", "my partner wants to wait before having sex, how do I respect that"),
    ("sexual", 0, "health", "can you explain consent to a teenager in simple words?"),
    ("sexual", 0, "relationship", "happy anniversary to my wife, love you {friend}"),
    ("sexual", 0, "health", "is the morning after pill safe to take twice in a month?"),
    ("sexual", 0, "relationship", "I think I'm bisexual, how do I tell my parents"),
    ("sexual", 0, "health", "the sex ed class {when} covers contraception and puberty"),
    # self_harm: crisis statements (the author's own intent or plan)
    ("self_harm", 1, "crisis", "i want to kill myself {when}, i have {pills} ready"),
    ("self_harm", 1, "crisis", "I can't do this anymore. I'm going to end my life {when}"),
    ("self_harm", 1, "crisis", "i wrote my goodbye letters, nobody will miss me"),
    ("self_harm", 1, "crisis", "how many of {pills} would it take to not wake up"),
    ("self_harm", 1, "crisis", "I've been cutting again, deeper this time {friend}"),
    ("self_harm", 1, "crisis", "going to jump off {pills} {when}, this is goodbye"),
    ("self_harm", 1, "crisis", "i just want to die. i'm planning to do it {when}"),
    ("self_harm", 1, "crisis", "tonight is the night I finally kill myself"),
    ("self_harm", 1, "crisis", "everyone would be better off if I was dead, I have {pills} right here"),
    ("self_harm", 1, "crisis", "what's the most painless way to commit suicide"),
    ("self_harm", 1, "crisis", "I burned my arm again to feel something"),
    ("self_harm", 1, "crisis", "i'm standing on the roof right now and i'm going to jump"),
    # self_harm: distress without intent, recovery, supporting others, figurative
    ("self_harm", 0, "distress", "today was awful {friend}, I'm so tired of everything"),
    ("self_harm", 0, "distress", "I've been really anxious about {game}, can't sleep"),
    ("self_harm", 0, "support", "if you're struggling please reach out, my DMs are open"),
    ("self_harm", 0, "recovery", "two years clean from self harm today, proud of myself"),
    ("self_harm", 0, "figurative", "this homework is killing me, I want to die lol"),
    ("self_harm", 0, "distress", "feeling really lonely since the breakup, anyone want to talk?"),
    ("self_harm", 0, "support", "my friend said she wants to hurt herself, how do I help her"),
    ("self_harm", 0, "figurative", "if I have to sit through one more meeting I'll jump out the window haha"),
    ("self_harm", 0, "distress", "my therapist says my depression is getting better {when}"),
    ("self_harm", 0, "figurative", "kill me now, {game} is so boring"),
    ("self_harm", 0, "distress", "I failed my exam and I feel like a failure"),
    ("self_harm", 0, "news", "the hospital opened a new mental health crisis line {when}"),
    # scam: phishing / smishing / fake giveaways
    ("scam", 1, "smishing", "{brand}: {lure}. Verify now at {link}"),
    ("scam", 1, "smishing", "URGENT {brand} alert: {lure}. Confirm your details within 24h: {link}"),
    ("scam", 1, "smishing", "{brand} notice - {lure}. Update your payment info {link} to avoid fees"),
    ("scam", 1, "giveaway", "free nitro giveaway!! claim yours before it ends {link}"),
    ("scam", 1, "giveaway", "Congratulations! {lure}. Reply with your card number to receive it"),
    ("scam", 1, "smishing", "hi mum, I lost my phone, this is my new number. can you send £300 for rent asap"),
    ("scam", 1, "investment",
     "I made $5000 this week with crypto trading, dm me and I'll teach you, guaranteed profit"),
    ("scam", 1, "smishing", "Your {brand} account will be closed {when}. Log in to keep it: {link}"),
    ("scam", 1, "giveaway", "steam is giving away free skins, log in with your account here {link}"),
    ("scam", 1, "smishing",
     "{brand} security: we noticed a payment you did not make. Call 0800 123 456 and give the code"),
    # scam: legitimate notifications and ordinary talk about packages/accounts
    ("scam", 0, "legit", "{brand}: {legit}"),
    ("scam", 0, "legit", "hey {friend}, did your package from {brand} arrive yet?"),
    ("scam", 0, "legit", "{brand}: {legit}. Reply STOP to opt out"),
    ("scam", 0, "legit", "I got a weird text saying {lure}, it's a scam right? don't click those links"),
    ("scam", 0, "legit", "can you send me the link to the meeting {when}"),
    ("scam", 0, "legit", "just paid you back for dinner {friend}, check your account"),
    ("scam", 0, "legit", "the giveaway winners are announced in #announcements {when}"),
    # harassment: abuse aimed at a specific person
    ("harassment", 1, "insult", "you are a {insult} and everyone in this server hates you"),
    ("harassment", 1, "insult", "@user shut up you {insult}"),
    ("harassment", 1, "bullying", "nobody wants you here, {insult}, just leave already"),
    ("harassment", 1, "bullying", "everyone go spam her dms and tell her what a {insult} she is"),
    ("harassment", 1, "insult", "look at this {insult}, imagine being this ugly lmao"),
    ("harassment", 1, "bullying", "I'm going to post your address and your photos everywhere, {insult}"),
    ("harassment", 1, "insult", "you're so stupid it hurts, go back to school {insult}"),
    ("harassment", 1, "bullying", "kys {insult}, no one would care"),
    # harassment: banter, disagreement and self-talk that is not abuse
    ("harassment", 0, "banter", "{friend} you're such a nerd lol, love you"),
    ("harassment", 0, "disagreement", "I disagree with your take on {game}, here's why"),
    ("harassment", 0, "self", "I'm such an idiot, I forgot my keys again"),
    ("harassment", 0, "neutral", "thanks for the help with {game} {friend}!"),
    ("harassment", 0, "disagreement", "that's a bad argument and you know it, but I respect you"),
    ("harassment", 0, "banter", "gg {friend}, you carried us in {game}"),
]


def generate(seed: int = SEED, per_template: int = PER_TEMPLATE) -> list[dict[str, str]]:
    """Fill every template up to `per_template` distinct ways; split by template."""
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []
    for tid, (cat, label, kind, tmpl) in enumerate(TEMPLATES):
        r = rng.random()
        split = "train" if r < 0.70 else ("val" if r < 0.85 else "test")
        seen: set[str] = set()
        for _ in range(per_template * 4):
            text = tmpl.format(**{k: rng.choice(v) for k, v in SLOTS.items() if "{" + k + "}" in tmpl})
            if rng.random() < 0.3:
                text = text.lower()
            if text in seen:
                continue
            seen.add(text)
            rows.append({"text": text, "category": cat, "label": str(label), "kind": kind,
                         "template": str(tid), "split": split})
            if len(seen) >= per_template:
                break
    return rows


def main() -> None:
    rows = generate()
    with OUT.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["text", "category", "label", "kind", "template", "split"],
                           lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {len(rows)} rows to {OUT}")


if __name__ == "__main__":
    main()
