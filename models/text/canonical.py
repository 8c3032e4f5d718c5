"""The text the model reads: one canonical form, shared by training and serving.

Why here and not in `training/`: serving must prepare text exactly as training did, and a
serving process must not import the training package (pandas, data loaders, scikit-learn) to
do so. Training imports these from here, so there is one definition of the form and of its
version.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable

from pipeline.normalize import BARE_DOMAIN, EMAIL, normalize, plausible_host

_MENTION = re.compile(r"<@!?\d+>|<user>|(?<!\w)@\w+")
_URL = re.compile(r"(?:https?://|www\.)\S+|<url>|\burl\b")
_RETWEET = re.compile(r"(?<!\w)rt(?=\s+@user)")
_SPACES = re.compile(r"\s+")

# Bump when `canonicalize` changes what the model reads: an artifact trained on another form is
# refused at load (`models.text.model.check_input_form`). 1: mentions, links, "rt" as below.
# 2: bare domains ("google.com") become "url" like links, e-mail addresses "email".
CANONICAL_VERSION = 2


def _host_token(token: str) -> Callable[[re.Match[str]], str]:
    """A substitution that replaces a match whose host (group 1) is a real domain with `token`."""

    def sub(m: re.Match[str]) -> str:
        has_path = m.lastindex is not None and m.lastindex >= 2 and bool(m.group(2))
        return token if plausible_host(m.group(1), has_path) else m.group(0)

    return sub


_EMAIL_TOKEN = _host_token("email")
_DOMAIN_TOKEN = _host_token("url")


def canonicalize(normalized: str) -> str:
    """Map mentions and links to one token each, as the training sets anonymise them.

    Runs after `pipeline.normalize.normalize`, at training and at serving time alike: OLID
    writes `@USER`/`URL`, HatEval `@user`, HateXplain `<user>`, Discord `<@123>`; the model
    should see one form. A bare domain ("google.com", which `normalize` keeps verbatim) is a
    link written without its scheme, so it becomes `url` too. An e-mail address becomes its own
    word, `email`: it is a contact point rather than something to click, spam asks for one in
    other words than it asks for a click ("reply to email" vs "tap url"), and "email" is a word
    the pretrained vocabulary already knows, where the raw address is split into sub-word noise.
    """
    text = normalized
    if "@" in text:
        text = EMAIL.sub(_EMAIL_TOKEN, text)
    text = _MENTION.sub("@user", text)
    text = _URL.sub("url", text)
    if "." in text:
        text = BARE_DOMAIN.sub(_DOMAIN_TOKEN, text)
    text = _RETWEET.sub("", text)  # Davidson's "rt @user:" is a Twitter artefact, absent from chat
    return _SPACES.sub(" ", text).strip()


def model_text(raw: str) -> str:
    """Raw data-set text -> what the model reads (HTML entities decoded, normalised, canonical)."""
    return canonicalize(normalize(html.unescape(raw)))
