"""The text the model reads: one canonical form, shared by training and serving.

Why here and not in `training/`: serving must prepare text exactly as training did, and a
serving process must not import the training package (pandas, data loaders, scikit-learn) to
do so. Training imports these from here, so there is one definition of the form and of its
version.
"""

from __future__ import annotations

import html
import re

from pipeline.normalize import normalize

_MENTION = re.compile(r"<@!?\d+>|<user>|(?<!\w)@\w+")
_URL = re.compile(r"(?:https?://|www\.)\S+|<url>|\burl\b")
_RETWEET = re.compile(r"(?<!\w)rt(?=\s+@user)")
_SPACES = re.compile(r"\s+")

# Bump when `canonicalize` changes what the model reads: an artifact trained on another form is
# refused at load (`models.text.model.check_input_form`). 1: mentions, links, "rt" as below.
CANONICAL_VERSION = 1


def canonicalize(normalized: str) -> str:
    """Map mentions and links to one token each, as the training sets anonymise them.

    Runs after `pipeline.normalize.normalize`, at training and at serving time alike: OLID
    writes `@USER`/`URL`, HatEval `@user`, HateXplain `<user>`, Discord `<@123>`; the model
    should see one form.
    """
    text = _MENTION.sub("@user", normalized)
    text = _URL.sub("url", text)
    text = _RETWEET.sub("", text)  # Davidson's "rt @user:" is a Twitter artefact, absent from chat
    return _SPACES.sub(" ", text).strip()


def model_text(raw: str) -> str:
    """Raw data-set text -> what the model reads (HTML entities decoded, normalised, canonical)."""
    return canonicalize(normalize(html.unescape(raw)))
