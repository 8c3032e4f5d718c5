"""`heron train links-bank`: the bundled known-bad link bank, built from the shared phishing list.

The upstream list (``discord_phishing_links/domain-list.json``) is reduced to what exact matching
needs: lower-case ASCII (punycode) hosts and host/path entries, sorted and de-duplicated, minus

- known false positives (``counter-strike.net``, a Valve domain: `KNOWN_FALSE_POSITIVES`), and
- whole-shortener entries (``clck.ru``): blocking a shortener blocks every short link on it;
  entries for single short links (``bit.ly/abc``) stay.

The result is a gzipped JSON file (``models/links/known_bad.json.gz``) with the provenance of its
source (repository, commit, sha256 of the file read, what was dropped and why), so the bank is
updated by re-running this on a newer copy of the list and committing the file. Gzip's own
timestamp is zeroed: the same list gives the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any

from pipeline.features.domains import is_shortener
from pipeline.features.links import to_ascii_host
from pipeline.scorers.links import BUNDLED_BANK, KNOWN_FALSE_POSITIVES
from training.links.data import upstream_list


def build_bank(root: Path, out: Path = BUNDLED_BANK) -> dict[str, Any]:
    """Write the bank file; returns its provenance block (with counts)."""
    entries, provenance = upstream_list(root)
    kept: set[str] = set()
    dropped: dict[str, list[str]] = {"known_false_positive": [], "whole_shortener": []}
    for raw in entries:
        e = raw.strip().lower()
        host, sep, path = e.partition("/")
        host = to_ascii_host(host)
        if not host:
            continue
        if host in KNOWN_FALSE_POSITIVES:
            dropped["known_false_positive"].append(host)
            continue
        if not path.strip("/") and is_shortener(host):
            dropped["whole_shortener"].append(host)
            continue
        kept.add(host + (sep + path.strip("/") if path.strip("/") else ""))
    provenance = {**provenance, "upstream_entries": len(entries), "entries": len(kept), "dropped": dropped}
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(json.dumps({"provenance": provenance, "domains": sorted(kept)}, indent=0).encode())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(buf.getvalue())
    print(json.dumps({k: v for k, v in provenance.items()}, indent=2))
    return provenance
