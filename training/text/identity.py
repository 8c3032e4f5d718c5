"""Neutral sentences that mention identity groups: training negatives against identity-term bias.

Why: the OLID/Davidson-style training sets use group words (gay, muslim, black, jewish, women...)
mostly in offensive tweets, so a model learns the word as the signal and flags "I'm a proud gay
dad" (Dixon et al. 2018, "Measuring and Mitigating Unintended Bias in Text Classification"). The
first artifact flagged 24% of ToxiGen's neutral lines, almost all through the toxicity head. The
standard mitigation is to add non-toxic sentences that mention the groups, so that the word alone
carries no weight; these are generated here from templates written for this purpose (not taken
from ToxiGen or any evaluation set).

Templates are split: TRAIN_TEMPLATES feed training, VAL_TEMPLATES (different sentence frames)
measure on validation whether the effect generalises beyond the frames it was trained on.
"""

from __future__ import annotations

import random

# (adjective form, plural noun form) per group.
GROUPS: tuple[tuple[str, str], ...] = (
    ("gay", "gay people"), ("lesbian", "lesbians"), ("bisexual", "bisexual people"),
    ("transgender", "trans people"), ("queer", "queer people"), ("black", "black people"),
    ("white", "white people"), ("asian", "asian people"), ("chinese", "chinese people"),
    ("mexican", "mexicans"), ("latino", "latinos"), ("hispanic", "hispanic people"),
    ("jewish", "jews"), ("muslim", "muslims"), ("christian", "christians"), ("hindu", "hindus"),
    ("arab", "arabs"), ("african", "africans"), ("native american", "native americans"),
    ("indian", "indians"), ("immigrant", "immigrants"), ("refugee", "refugees"),
    ("disabled", "disabled people"), ("deaf", "deaf people"), ("blind", "blind people"),
    ("autistic", "autistic people"), ("female", "women"), ("male", "men"), ("elderly", "old people"),
    ("middle eastern", "middle eastern people"), ("atheist", "atheists"), ("buddhist", "buddhists"),
)

TRAIN_TEMPLATES: tuple[str, ...] = (
    "i am {adj} and proud of it",
    "my best friend is {adj}",
    "my neighbours are {adj} and they are lovely",
    "{noun} live all over this city",
    "many {noun} work in hospitals and schools",
    "our team has a few {adj} players this season",
    "she wrote a book about {adj} history",
    "the {adj} community center is hosting a food drive on saturday",
    "he is a {adj} engineer at a big company",
    "we learned about {adj} culture in class today",
    "{noun} deserve the same rights as everyone else",
    "i grew up with {adj} cousins",
    "my teacher is {adj} and she is the best",
    "there is a new {adj} restaurant downtown, the food is great",
    "the documentary interviewed {noun} from three countries",
    "as a {adj} person i love this game",
    "{adj} artists made most of the music on this playlist",
    "the survey asked {noun} about their favourite sports",
    "my roommate is {adj}, we play games every night",
    "congrats to the {adj} students who graduated today",
    "lots of {noun} are in this discord server",
    "is anyone else here {adj}? looking for people to chat with",
)

VAL_TEMPLATES: tuple[str, ...] = (
    "my aunt is {adj} and she makes the best cookies",
    "{noun} have lived here for generations",
    "i met some {adj} gamers at the tournament",
    "the museum has an exhibit on {adj} art",
    "our doctor is {adj}",
    "{noun} volunteer at the shelter every weekend",
    "welcome to all the {adj} members who joined this week",
    "i'm {adj}, ask me anything",
)


def sentences(split: str, seed: int = 13) -> list[str]:
    """Every template of the split filled with every group, in a seeded order."""
    templates = TRAIN_TEMPLATES if split == "train" else VAL_TEMPLATES
    out = []
    for t in templates:
        for adj, noun in GROUPS:
            # "a {adj}" before a vowel reads "an" ("an asian engineer", "an immigrant person")
            text = t.format(adj=adj, noun=noun)
            if " a " + adj in text and adj[0] in "aeiou":
                text = text.replace(" a " + adj, " an " + adj)
            out.append(text)
    random.Random(seed).shuffle(out)
    return out
