"""The page: one self-contained HTML file, the data embedded as JSON, script and style inline and
allowed by hash in a strict Content-Security-Policy (no network, no other script or style)."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from importlib import resources
from typing import Any

__all__ = ["embed_json", "page_html"]

#: Everything not inline is refused: no request can leave the page.
CSP = ("default-src 'none'; script-src {scripts}; style-src {styles}; img-src data:; "
       "base-uri 'none'; form-action 'none'")


def _asset(name: str) -> str:
    return resources.files("graphexec.viewer").joinpath(name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def embed_json(data: Any) -> str:
    """JSON that is safe inside ``<script type="application/json">``: no ``<``, ``>`` or ``&``
    (so no ``</script>`` or ``<!--``), and no line separators, appear literally."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                    ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, esc)
    return text


def _dagre() -> str:
    """The vendored dagre (MIT; licence kept beside it and in the page), without its source-map
    comment, which would point outside the page."""
    code = re.sub(r"//# sourceMappingURL=\S*\s*$", "", _asset("vendor/dagre.min.js"))
    return "/*! dagre 3.1.3 (@dagrejs/dagre), MIT licence:\n" + _asset("vendor/dagre.LICENSE.txt") + "*/\n" + code


def page_html(data: dict[str, Any], *, need_dagre: bool, version: str) -> str:
    """The whole page for ``data`` (see :func:`graphexec.viewer.steps.story`); ``need_dagre``: a
    view has no precomputed layout, so the page carries the layout library."""
    scripts = ([_dagre()] if need_dagre else []) + [_asset("viewer.js")]
    style = _asset("viewer.css")
    csp = CSP.format(scripts=" ".join(_hash(s) for s in scripts), styles=_hash(style))
    tags = "\n".join(f"<script>{s}</script>" for s in scripts)
    fill = {"CSP": csp, "STYLE": style, "VERSION": version, "SCRIPTS": tags,
            "TITLE": html.escape(f"{data['title']} — graphexec view"), "DATA": embed_json(data)}
    # one pass: text put in is never searched again for placeholders
    return re.sub(r"@([A-Z]+)@", lambda m: fill[m.group(1)], _asset("template.html"))
