"""`summary.html`: summary.md as a page to open in a browser, with its plots beside it.

The Markdown is rendered by markdown-it-py (CommonMark plus tables). The plots it links are
embedded as data URIs, so the page stands alone: opened from disk, mailed, or shown inside
Snakemake's HTML report (which holds each result as one file).
"""
from __future__ import annotations

import base64
import html
from pathlib import Path

from markdown_it import MarkdownIt

STYLE = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1b1f24;
       max-width: 1320px; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.8rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .8rem 0; font-size: 13px; display: block; overflow-x: auto; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; white-space: nowrap; }
th { background: #f3f5f7; white-space: normal; vertical-align: bottom; }
tr:nth-child(even) td { background: #fafbfc; }
td[style*="right"], th[style*="right"] { font-variant-numeric: tabular-nums; }
img { max-width: 100%; height: auto; border: 1px solid #e4e8ec; margin: .5rem 0; }
code { background: #f3f5f7; padding: 0 .25em; border-radius: 3px; font-size: 90%; }
"""


def render_html(markdown: str, folder: str | Path, title: str = "TVTS results") -> str:
    """A standalone HTML page of `markdown`: no scripts, and each image it links that exists under
    `folder` embedded (a missing one stays a link)."""
    md = MarkdownIt("commonmark").enable("table")
    tokens = md.parse(markdown)
    for token in tokens:
        for child in token.children or []:
            if child.type == "image" and (path := Path(folder) / str(child.attrGet("src"))).is_file():
                child.attrSet("src", "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode())
    body = md.renderer.render(tokens, md.options, {})
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n")
