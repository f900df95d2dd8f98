"""A report document, built once as a list of blocks (heading, paragraph, list, table, image,
verdict), written twice: as Markdown (images linked beside it) and as self-contained HTML (images
embedded as data URIs, so the file opens from disk)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

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

def _inline_html(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))

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

def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_inline_html(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for cell in row:
            state = STATE_CLASSES.get(cell) or ("num" if NUMERIC.fullmatch(cell) else "")
            cells.append(f"<td class=\"{state}\">{_inline_html(cell)}</td>" if state else f"<td>{_inline_html(cell)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"

def to_html(blocks: list[tuple], title: str) -> str:
    out = [f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{html.escape(title)}</title>",
           f"<style>{CSS}</style>\n</head>\n<body>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_inline_html(block[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_inline_html(block[1])}</p>")
        elif kind == "verdict":
            out.append(f"<p class=\"verdict {block[1].replace(' ', '-')}\">{_inline_html(block[2])}</p>")
        elif kind == "ul":
            out.append("<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            out.append(_html_table(block[1], block[2]))
        elif kind == "tables":
            out.append("<div class=\"tables\">" + "".join(
                f"<div><p>{_inline_html(caption)}</p>{_html_table(header, rows)}</div>"
                for caption, header, rows in block[1]) + "</div>")
        elif kind == "img":
            data = base64.b64encode(Path(block[1]).read_bytes()).decode("ascii")
            out.append(f"<h3>{_inline_html(block[2].capitalize())}</h3>"
                       f"<img alt=\"{html.escape(block[2])}\" src=\"data:image/png;base64,{data}\">")
    out.append("</body>\n</html>\n")
    return "\n".join(out)
