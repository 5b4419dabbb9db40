"""The page around the report's sections: the inline stylesheet, the navigation, the footer.

Nothing is loaded from anywhere: no script, font, stylesheet or image reference to a network
location, so the file opens offline.
"""

from __future__ import annotations

from llenergymeasure.report.html_cells import esc

CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif;
       margin: 0 auto; max-width: 1250px; padding: 0 1.5em 3em; color: #222; font-size: 14px; }
h1 { font-size: 1.5em; margin: 1em 0 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.8em; }
h3 { font-size: 1em; margin: 1.2em 0 0.3em; }
nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.muted { color: #777; }
.banner { padding: 0.6em 0.9em; border-radius: 4px; margin: 0.8em 0; }
.warn { background: #fff4e0; border: 1px solid #f0b040; }
.bad { background: #fdecea; border: 1px solid #e57373; }
.ok { background: #eef7ee; border: 1px solid #8bc48b; }
figure { margin: 0.6em 0 1.2em; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.85em; color: #555; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 0.4em 1em; }
code { background: #f5f5f5; padding: 0 3px; }
.scroll { overflow-x: auto; }
details { margin: 0.4em 0; }
"""


def document(title: str, body: str) -> str:
    nav = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("summary", "Summary"),
            ("axes", "Swept axes"),
            ("pareto", "Pareto"),
            ("power", "Power"),
            ("runs", "Runs"),
            ("warnings", "Warnings"),
            ("failures", "Failures"),
            ("environment", "Environment"),
        )
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>"
        f"<nav>{nav}</nav>\n{body}\n"
        '<p class="muted">Written by llenergymeasure. This file loads nothing from the network; the '
        "figures are embedded and also saved under figures/.</p></body></html>\n"
    )
