"""Small pieces of the run report's HTML: escaping, numbers with their uncertainties, tables,
and the page's style sheet.  Plain strings, no template engine; every text that comes from
data goes through :func:`esc`, every link through :func:`href`."""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

#: what a missing or failed value shows
MISSING = "–"


def esc(text) -> str:
    """``text`` as HTML text (quotes escaped too: safe inside attributes)."""
    return html.escape(str(text), quote=True)


def href(relative: str, version: str | None = None) -> str:
    """A relative link to a file of the output folder (``/``-separated, percent-encoded),
    with ``?v=version`` so that a page reloaded while files change shows the new ones
    (a local file is the same file with or without the query)."""
    link = quote(relative, safe="/")
    return esc(f"{link}?v={version}" if version else link)


def finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def num(value, digits: int = 4) -> str:
    """``value`` with ``digits`` significant digits (:data:`MISSING` when not finite);
    whole numbers stay whole."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not finite(value):
        return MISSING
    value = float(value)
    if value == int(value) and abs(value) < 1e15:  # thin spaces between thousands
        return f"{int(value):,d}".replace(",", "\u2009") if abs(value) >= 1e4 else \
            f"{int(value):d}"
    text = f"{value:.{digits}g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        return f"{mantissa}×10<sup>{int(exponent)}</sup>"
    return text


def fixed(value, decimals: int) -> str:
    return f"{float(value):.{decimals}f}" if finite(value) else MISSING


def pm(value, err, unit: str = "") -> str:
    """``value ± err`` with ``err`` rounded to two significant digits, then ``unit``."""
    if not finite(value):
        return MISSING
    value = float(value)
    if finite(err) and float(err) > 0:
        err = float(err)
        decimals = min(12, max(0, 1 - math.floor(math.log10(err))))
        text = f"{value:.{decimals}f} ± {err:.{decimals}f}"
    else:
        text = num(value)
    return f"{text} {esc(unit)}" if unit else text


def duration(seconds) -> str:
    """A time span for people: ``42 s``, ``3 min 20 s``, ``2 h 05 min``."""
    if not finite(seconds):
        return MISSING
    s = max(0, int(round(float(seconds))))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


@dataclass(frozen=True)
class Cell:
    """One table cell: HTML content, a CSS class (``num``, ``bad``, ...) and a tooltip."""

    html: str
    cls: str = ""
    title: str = ""

    def render(self, tag: str = "td") -> str:
        attrs = f' class="{self.cls}"' if self.cls else ""
        attrs += f' title="{esc(self.title)}"' if self.title else ""
        return f"<{tag}{attrs}>{self.html}</{tag}>"


def cell(content, cls: str = "", title: str = "") -> Cell:
    return content if isinstance(content, Cell) else Cell(str(content), cls, title)


def table(header: Sequence[tuple[str, str]], rows: Iterable[Sequence], *, cls: str = "",
          caption: str = "") -> str:
    """A table: ``header`` is (name, unit) per column (unit "" for none: shown under the
    name); ``rows`` hold HTML strings or :class:`Cell` s.  Wrapped so that a wide table
    scrolls sideways instead of widening the page."""
    head = "".join(
        f"<th>{name}" + (f'<span class="unit">{esc(unit)}</span>' if unit else "") + "</th>"
        for name, unit in header)
    body = "\n".join("<tr>" + "".join(cell(c, "num" if i else "").render()
                                      for i, c in enumerate(row)) + "</tr>"
                     for row in rows)
    cap = f"<caption>{caption}</caption>" if caption else ""
    return (f'<div class="scroll"><table class="{cls}">{cap}<thead><tr>{head}</tr></thead>'
            f"<tbody>\n{body}\n</tbody></table></div>")


def key_values(rows: Iterable[tuple[str, str, str]], cls: str = "kv") -> str:
    """A two-column table of (quantity, value HTML, note HTML)."""
    body = "\n".join(f"<tr><th>{name}</th><td class=\"num\">{value}</td><td>{note}</td></tr>"
                     for name, value, note in rows)
    return f'<div class="scroll"><table class="{cls}"><tbody>\n{body}\n</tbody></table></div>'


CSS = """
:root { --ink: #1d232b; --muted: #5b6673; --line: #d5dbe1; --head: #eef2f6; --bad: #a3131b;
        --bad-bg: #fdecec; --good: #1d6b35; --good-bg: #e9f6ed; --live: #8a5a00;
        --live-bg: #fff4d6; --link: #0b57a4; }
* { box-sizing: border-box; }
html { font-size: 15px; }
body { margin: 0 auto; padding: 0 28px 48px; max-width: 1880px; color: var(--ink);
       font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "DejaVu Sans",
       "Liberation Sans", Arial, sans-serif; line-height: 1.45; background: #fff; }
header { padding: 18px 0 10px; border-bottom: 2px solid var(--ink); }
h1 { font-size: 1.75rem; margin: 0 0 4px; }
h2 { font-size: 1.3rem; margin: 34px 0 10px; padding-bottom: 4px;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 1.08rem; margin: 22px 0 8px; }
p { margin: 6px 0; }
a { color: var(--link); }
.meta { color: var(--muted); }
nav { margin: 10px 0 0; display: flex; flex-wrap: wrap; gap: 6px 16px; }
nav a { text-decoration: none; }
nav a:hover { text-decoration: underline; }
.badge { display: inline-block; padding: 1px 9px; border-radius: 10px; font-size: 0.85rem;
         font-weight: 600; vertical-align: middle; margin-left: 8px; }
.badge.final { background: var(--good-bg); color: var(--good); }
.badge.live { background: var(--live-bg); color: var(--live); }
.banner { margin: 14px 0 0; padding: 10px 14px; border-radius: 6px; }
.banner.live { background: var(--live-bg); color: var(--live); border: 1px solid #f0d79a; }
.banner.bad { background: var(--bad-bg); color: var(--bad); border: 1px solid #f3c2c4; }
.banner.good { background: var(--good-bg); color: var(--good); border: 1px solid #bfe3c9; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 10px; font-variant-numeric: tabular-nums; }
caption { text-align: left; color: var(--muted); padding: 2px 0 6px; caption-side: top; }
th, td { border: 1px solid var(--line); padding: 4px 7px; vertical-align: top; }
thead th { background: var(--head); text-align: center; font-weight: 600;
           position: sticky; top: 0; }
th .unit { display: block; font-weight: 400; color: var(--muted); font-size: 0.85rem; }
tbody tr:nth-child(even) td { background: #f8fafb; }
td.num { text-align: right; white-space: nowrap; }
td.text { text-align: left; white-space: normal; }
td.name { text-align: left; white-space: nowrap; }
td.bad, tbody tr:nth-child(even) td.bad { background: var(--bad-bg); color: var(--bad);
                                          font-weight: 600; }
td.note { color: var(--muted); text-align: left; white-space: normal; }
td.changed { font-weight: 700; background: #eef4fc; }
table.kv th { text-align: left; background: var(--head); font-weight: 600; }
table.kv td.num { min-width: 12em; }
table.kv td:last-child { color: var(--muted); }
ul.failures { margin: 8px 0; padding-left: 22px; }
ul.failures li { margin: 3px 0; }
ul.failures .where { font-weight: 600; }
.figures { display: grid; gap: 18px;
           grid-template-columns: repeat(auto-fill, minmax(min(100%, 600px), 1fr));
           align-items: start; }
figure { margin: 0; border: 1px solid var(--line); border-radius: 4px; padding: 8px;
         background: #fff; }
figure.wide { grid-column: 1 / -1; }
figure img { display: block; width: 100%; height: auto; }
figure.wide img { max-width: 1800px; margin: 0 auto; }
figcaption { margin-top: 6px; color: var(--muted); font-size: 0.9rem; }
figcaption a { overflow-wrap: anywhere; }
ul.files { columns: 2 520px; margin: 6px 0; padding-left: 22px; }
ul.files li { break-inside: avoid; margin: 2px 0; }
details { margin: 8px 0; }
summary { cursor: pointer; color: var(--link); }
code { font-family: ui-monospace, "DejaVu Sans Mono", "Liberation Mono", Menlo, monospace;
       font-size: 0.9em; }
footer { margin-top: 40px; padding-top: 8px; border-top: 1px solid var(--line);
         color: var(--muted); font-size: 0.9rem; }
@media print { .figures { display: block; } figure { break-inside: avoid; margin: 0 0 12px; }
               thead th { position: static; } }
"""
