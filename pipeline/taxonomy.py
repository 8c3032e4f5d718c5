"""The one category taxonomy that every Heron model, list and policy speaks.

Why one place: scorers, the ensemble, guild policies, the review UI and training label maps must
agree on category names, or a score silently lands in the wrong bucket. Adding a category here is
the only way to add one anywhere.

| category    | what it covers                                                                  |
|-------------|---------------------------------------------------------------------------------|
| toxicity    | general offensive, insulting or profane content (the broadest text category)   |
| harassment  | abuse aimed at a person: insults, threats, bullying of a specific target        |
| hate        | attacks on people for a protected attribute (race, religion, gender, ...)       |
| sexual      | sexual content, solicitation, nudity                                            |
| violence    | threats or glorification of violence, gore                                      |
| self_harm   | promotion or instruction of self-harm or suicide                                |
| spam        | unsolicited bulk or repetitive promotional content, flooding                    |
| scam        | fraud and phishing: fake giveaways, credential theft, known-bad links           |
"""

from __future__ import annotations

from enum import StrEnum


class Category(StrEnum):
    """A moderation category; the string value is the wire name."""

    TOXICITY = "toxicity"
    HARASSMENT = "harassment"
    HATE = "hate"
    SEXUAL = "sexual"
    VIOLENCE = "violence"
    SELF_HARM = "self_harm"
    SPAM = "spam"
    SCAM = "scam"


CATEGORIES: tuple[Category, ...] = tuple(Category)
CATEGORY_NAMES: tuple[str, ...] = tuple(c.value for c in Category)

DESCRIPTIONS: dict[Category, str] = {
    Category.TOXICITY: "general offensive, insulting or profane content",
    Category.HARASSMENT: "abuse aimed at a specific person",
    Category.HATE: "attacks on people for a protected attribute",
    Category.SEXUAL: "sexual content or solicitation",
    Category.VIOLENCE: "threats or glorification of violence",
    Category.SELF_HARM: "promotion or instruction of self-harm",
    Category.SPAM: "unsolicited bulk or repetitive promotion",
    Category.SCAM: "fraud, phishing and known-bad links",
}


def parse_category(name: str) -> Category:
    """Return the Category for a wire name, raising ValueError naming the valid ones."""
    try:
        return Category(name)
    except ValueError:
        raise ValueError(f"unknown category {name!r}; expected one of {', '.join(CATEGORY_NAMES)}") from None
