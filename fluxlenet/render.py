"""A report document, built once as a list of blocks (heading, paragraph, list, table, image,
verdict), written twice: as Markdown (images linked beside it) and as self-contained HTML (images
embedded as data URIs, so the file opens from disk)."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import jinja2
from markupsafe import Markup, escape


def _inline_md(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(blocks: list[tuple], folder: Path) -> str:
    out = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append("#" * int(kind[1]) + " " + block[1])
        elif kind == "p":
            out.append(block[1])
        elif kind == "verdict":
            out.append(f"**{block[2]}**")
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in block[1]))
        elif kind == "table":
            header, rows = block[1], block[2]
            lines = ["| " + " | ".join(_inline_md(h) for h in header) + " |", "|" + "---|" * len(header)]
            lines += ["| " + " | ".join(_inline_md(c) for c in row) + " |" for row in rows]
            out.append("\n".join(lines))
        elif kind == "tables":
            for caption, header, rows in block[1]:
                out.append(caption)
                out.append(to_markdown([("table", header, rows)], folder).strip())
        elif kind == "img":
            out.append(f"![{block[2]}]({Path(block[1]).relative_to(folder)})")
    return "\n\n".join(out) + "\n"


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 24px auto;
       max-width: 1180px; padding: 0 16px; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; white-space: nowrap; }
.tables { display: flex; flex-wrap: wrap; gap: 0 18px; } .tables p { margin: 0.6em 0 0; }
code { background: #f3f3f3; padding: 0 3px; }
img { max-width: 100%; border: 1px solid #eee; margin: 6px 0 18px; display: block; }
.verdict { font-size: 1.2em; font-weight: bold; padding: 6px 10px; display: inline-block; border-radius: 4px; }
.pass { background: #e3f5e1; color: #1d6b1d; } .fail { background: #fbe3e3; color: #a11; }
.incomplete, .not-compared, .inconclusive { background: #fff4d6; color: #7a5a00; }
td.pass, td.fail, td.incomplete, td.not-compared, td.inconclusive { font-weight: bold; white-space: nowrap; }
td.muted { color: #777; font-style: italic; white-space: nowrap; }
"""


NUMERIC = re.compile(r"[0-9.,+\-−–/±()=\sena]*")


STATE_CLASSES = {"pass": "pass", "FAIL": "fail", "INCOMPLETE": "incomplete", "not compared": "not-compared",
                 "inconclusive": "inconclusive", "reproduced": "pass", "NOT REPRODUCED": "fail",
                 "not reproduced": "fail", "holds": "pass", "does not hold": "fail", "consistent": "pass",
                 "different": "fail",
                 "not run": "muted", "n/a": "muted num"}


def _inline_html(text: str) -> Markup:
    """Escaped text, `code` spans as <code>."""
    return Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", str(escape(text))))


def _cell_class(cell: str) -> str:
    """A table cell's CSS class: the colour of a verdict word, right alignment for figures."""
    return STATE_CLASSES.get(cell) or ("num" if NUMERIC.fullmatch(cell) else "")


def _data_uri(path: str) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


_ENV = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
_ENV.filters.update(inline=_inline_html, cell_class=_cell_class, data_uri=_data_uri)


_TABLE = """<table><thead><tr>{% for h in header %}<th>{{ h | inline }}</th>{% endfor %}</tr></thead><tbody>
{% for row in rows %}<tr>{% for cell in row %}{% set c = cell | cell_class %}\
<td{% if c %} class="{{ c }}"{% endif %}>{{ cell | inline }}</td>{% endfor %}</tr>
{% endfor %}</tbody></table>"""


_PAGE = _ENV.from_string("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
{% macro table(header, rows) %}""" + _TABLE + """{% endmacro %}
{% for b in blocks %}
{% if b[0] in ("h1", "h2", "h3") %}
<{{ b[0] }}>{{ b[1] | inline }}</{{ b[0] }}>
{% elif b[0] == "p" %}
<p>{{ b[1] | inline }}</p>
{% elif b[0] == "verdict" %}
<p class="verdict {{ b[1] | replace(' ', '-') }}">{{ b[2] | inline }}</p>
{% elif b[0] == "ul" %}
<ul>{% for item in b[1] %}<li>{{ item | inline }}</li>{% endfor %}</ul>
{% elif b[0] == "table" %}
{{ table(b[1], b[2]) }}
{% elif b[0] == "tables" %}
<div class="tables">{% for caption, header, rows in b[1] %}<div><p>{{ caption | inline }}</p>\
{{ table(header, rows) }}</div>{% endfor %}</div>
{% elif b[0] == "img" %}
<h3>{{ b[2] | capitalize | inline }}</h3>
<img alt="{{ b[2] }}" src="{{ b[1] | data_uri }}">
{% endif %}
{% endfor %}
</body>
</html>
""")


def to_html(blocks: list[tuple], title: str) -> str:
    """The document as one self-contained HTML page (Jinja2 escapes every text; images embedded)."""
    return _PAGE.render(blocks=blocks, title=title, css=Markup(CSS))
