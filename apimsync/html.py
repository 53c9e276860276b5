"""A small HTML table for notebooks (Databricks and Jupyter render ``_repr_html_``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

_BADGE = {"create": "#1a7f37", "update": "#9a6700", "delete": "#cf222e", "failed": "#cf222e",
          "skipped": "#6e7781", "no-op": "#6e7781", "ok": "#1a7f37"}


def table(title: str, headers: Sequence[str], rows: Iterable[Sequence[str]], notes: Iterable[str] = ()) -> str:
    head = "".join(f"<th style='text-align:left'>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = escape(str(cell))
            if i == 0 and cell in _BADGE:
                text = f"<b style='color:{_BADGE[cell]}'>{text}</b>"
            cells.append(f"<td>{text}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    foot = "".join(f"<p>{escape(n)}</p>" for n in notes)
    return (f"<div><h4>{escape(title)}</h4><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>{foot}</div>")
