"""The Content-Security-Policy allows scripts only from 'self': templates may not rely on inline JS.

An inline handler such as ``onsubmit="return false"`` is silently ignored by the browser under
that policy, so the behaviour it was meant to give is missing (the upload form then submitted
patient details as a GET query string on Enter).
"""

from __future__ import annotations

import re
from pathlib import Path

import medvault

TEMPLATES = sorted(Path(medvault.__file__).parent.rglob("templates/**/*.html"))
INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.IGNORECASE | re.DOTALL)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>\s*\S", re.IGNORECASE)
JS_URL = re.compile(r"""(href|src|action)\s*=\s*["']\s*javascript:""", re.IGNORECASE)


def test_templates_found():
    assert len(TEMPLATES) > 10


def test_no_inline_event_handlers_scripts_or_javascript_urls():
    offenders = []
    for path in TEMPLATES:
        text = path.read_text()
        for pattern in (INLINE_HANDLER, INLINE_SCRIPT, JS_URL):
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{path.name}:{line}: {match.group(0)[:60]!r}")
    assert not offenders, "inline JS is blocked by the CSP:\n" + "\n".join(offenders)
