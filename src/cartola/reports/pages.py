"""Building blocks of the HTML pages (run report, run history, drift section): tables,
embedded figures, the shared style, and the TFDV statistics the pages draw."""
from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path
from typing import Any, Dict, Sequence


def split_dirs(uri: str) -> Dict[str, Path]:
    """Split name -> folder of an artifact with ``Split-<name>`` folders."""
    return {p.name[len("Split-"):]: p for p in sorted(Path(uri).glob("Split-*"))}


def load_statistics(uri: str) -> Dict[str, Any]:
    """Split -> DatasetFeatureStatistics of a StatisticsGen artifact."""
    import tensorflow_data_validation as tfdv  # pylint: disable=import-outside-toplevel
    result = {}
    for split, folder in split_dirs(uri).items():
        path = folder / "FeatureStats.pb"
        if path.is_file():
            result[split] = tfdv.load_stats_binary(str(path)).datasets[0]
    return result


def fmt(value: Any, digits: int = 4) -> str:
    """A cell: numbers rounded, thousands separated, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if value.is_integer() and abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "") -> str:
    """An HTML table; cells formatted by :func:`fmt`."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def img(png: bytes, alt: str) -> str:
    """A PNG embedded in the page."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;
max-width:1150px;color:#222;padding:0 1em}
h1{margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td:first-child,th:first-child{text-align:left}
.ok{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:600}
.muted{color:#777}img{max-width:100%;margin:.4em 0}.figs{display:flex;flex-wrap:wrap;gap:1em}
code{background:#f4f4f4;padding:0 .3em}table.stats td:last-child{text-align:left}
"""


def figure_png(fig) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    plt.close(fig)
    return buffer.getvalue()


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    return plt
