"""
HTML for a teacher's screen: one self-contained page per run (pipeline.py's out/report.html) and
the token views (inspect_tokens.py's tokens.html). Plain HTML and CSS: plots are embedded as
base64 PNGs, a token's numbers show on hover (the title attribute) and in a table below, nothing
is fetched from the network and no script runs, so the page opens from disk anywhere.

A token view is plain data (what inspect_tokens.py writes to tokens.json):
    {"name", "title", "caption", "lines": [{"label", "tokens": [str], "series": {name: [float or None]},
                                            "colour": the series that colours the tokens, "note"}]}
"""

import base64
import html
import math
import os

from generation import describe_messages

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; } .muted { color: #666; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ddd; padding: 3px 8px; vertical-align: top; } th { background: #f4f4f4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.up { background: #c8ecc8; } .down { background: #f6c6c6; }
.pipeline { display: flex; flex-wrap: wrap; align-items: stretch; gap: 0.3em; }
.stage { border: 2px solid #6a8caf; border-radius: 8px; padding: 0.5em; width: 11em; font-size: 0.85em; }
.stage b { font-size: 1.1em; } .arrow { align-self: center; font-size: 1.5em; color: #6a8caf; }
.tokens { font-family: ui-monospace, monospace; font-size: 0.95em; line-height: 2; white-space: pre-wrap; }
.tokens span { border-radius: 3px; padding: 1px 0; }
.label { font-weight: bold; margin-top: 0.8em; } img { max-width: 100%; }
pre { white-space: pre-wrap; margin: 0; font-size: 0.9em; }
"""


def esc(text):
    return html.escape(str(text), quote=True)


def page(title, body):
    """A whole page: title, inline style, body."""
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{esc(title)}</title>"
            f"<style>{STYLE}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n{body}\n</body></html>\n")


def write_page(path, title, body):
    """Write the page atomically (a reader never opens half a file)."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write(page(title, body))
    os.replace(path + ".tmp", path)
    return path


def embedded_image(path, alt):
    """A PNG inside the page as a data: URI, so the page needs no file beside it."""
    with open(path, "rb") as f:
        data = base64.b64encode(f.read()).decode("ascii")
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def table(header, rows):
    """header: [str]; rows: [[cell html]] (cells already escaped by the caller)."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(rows_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def rows_cell(cell):
    """A cell given as html text, or as (html, css class)."""
    text, css = cell if isinstance(cell, tuple) else (cell, "")
    return f'<td class="{css}">{text}</td>' if css else f"<td>{text}</td>"


# ----------------------------------------------------------------------------- token views


def colour_rgba(value, scale):
    """Diverging colour of a token as (r, g, b, alpha) in 0..1: green for positive, red for
    negative, clear at 0, full strength at |value| >= scale."""
    if value is None or not math.isfinite(value) or scale <= 0:
        return (1.0, 1.0, 1.0, 0.0)
    strength = min(abs(value) / scale, 1.0) * 0.75
    return (0.0, 0.63, 0.0, strength) if value > 0 else (0.86, 0.0, 0.0, strength)


def colour(value, scale):
    r, g, b, a = colour_rgba(value, scale)
    return f"rgba({r * 255:.0f},{g * 255:.0f},{b * 255:.0f},{a:.2f})"


def view_scale(view, line=None):
    """The colour scale: the largest magnitude of the colour series over the whole view, so that
    its lines compare by eye, or over each line alone where the view says "scale": "line" (changes
    of very different sizes, such as SFT's and DPO's)."""
    lines = [line] if line is not None and view.get("scale") == "line" else view["lines"]
    values = [abs(v) for ln in lines for v in ln["series"][ln["colour"]] if v is not None]
    return max(values, default=0.0)


def shown_token(token):
    return token.replace("\n", "\u21b5\n")  # a newline token stays visible


def number(value, digits=3):
    return "" if value is None else f"{value:+.{digits}f}"


def token_line_html(line, scale):
    spans = []
    for k, token in enumerate(line["tokens"]):
        hover = "; ".join(f"{name} {number(values[k])}" for name, values in line["series"].items()
                          if values[k] is not None)
        spans.append(f'<span style="background:{colour(line["series"][line["colour"]][k], scale)}" '
                     f'title="{esc(hover)}">{esc(shown_token(token))}</span>')
    note = f' <span class="muted">{esc(line["note"])}</span>' if line.get("note") else ""
    return (f'<div class="label">{esc(line["label"])}{note}</div>'
            f'<div class="tokens">{"".join(spans)}</div>')


def token_table_html(line):
    names = list(line["series"])
    rows = [[f"<code>{esc(repr(token))}</code>", *[(number(line['series'][n][k]), "num") for n in names]]
            for k, token in enumerate(line["tokens"])]
    return (f"<details><summary>{esc(line['label'])}: the numbers, token by token</summary>"
            f"{table(['token', *names], rows)}</details>")


def token_view_html(view, image=None):
    """A token view: its caption, each line's tokens coloured by the view's colour series (numbers
    on hover), the tables below; image: the view's PNG to embed as well (optional)."""
    scale = "each line's largest |x|" if view.get("scale") == "line" else f"|x| = {view_scale(view):.3g}"
    parts = [f"<h3>{esc(view['title'])}</h3>", f"<p>{esc(view['caption'])}</p>",
             f'<p class="muted">Colour: green above 0, red below, full strength at {scale}. '
             f"Hover a token for its numbers.</p>"]
    parts += [token_line_html(line, view_scale(view, line)) for line in view["lines"]]
    parts += [token_table_html(line) for line in view["lines"]]
    if image and os.path.exists(image):
        parts.append(f"<details><summary>the same view as a PNG</summary>{embedded_image(image, view['title'])}"
                     f"</details>")
    return "\n".join(parts)


# ----------------------------------------------------------------------------- the run's page


def pipeline_html(stages):
    """The pipeline picture: a box per stage (name, time, key figure), arrows between them.
    stages: [(name, time text, key figure text)]."""
    boxes = [f'<div class="stage"><b>{esc(name)}</b><br><span class="muted">{esc(time)}</span><br>{esc(figure)}'
             f"</div>" for name, time, figure in stages]
    return '<div class="pipeline">' + '<div class="arrow">&rarr;</div>'.join(boxes) + "</div>"


def cell_text(key, value):
    if value is None:
        return "-"
    return f"{value:.3f}" if key.startswith(("val_loss", "gold")) else f"{100 * value:.0f}%"


def scorecard_html(results, rows, parents, lower_is_better):
    """The scorecard with a column per stage and each cell coloured by its change from the stage
    it was trained from (green better, red worse; 'better' is down for the keys in
    lower_is_better). results: {stage: {key: value}}; rows: [(label, key)]; parents: {stage: parent}."""
    stages = list(results)
    body = []
    for label, key in rows:
        if all(results[s].get(key) is None for s in stages):
            continue
        cells = [esc(label)]
        for s in stages:
            value, before = results[s].get(key), results.get(parents.get(s), {}).get(key)
            if value is None or before is None:
                cells.append((cell_text(key, value), "num"))
                continue
            change = value - before
            scale = 1 if key.startswith(("val_loss", "gold")) else 100
            shown = f"{cell_text(key, value)} ({change * scale:+.{3 if scale == 1 else 0}f})"
            better = change < 0 if key in lower_is_better else change > 0
            css = "num" if abs(change * scale) < (0.005 if scale == 1 else 0.5) else f"num {'up' if better else 'down'}"
            cells.append((esc(shown), css))
        body.append(cells)
    return table(["behaviour", *stages], body)


def replies_html(examples, suites):
    """For each behaviour, its first held-out prompt and every stage's reply side by side.
    examples: {stage: {suite: [{"prompt", "reply": messages or text, "ended"}]}}."""
    stages = list(examples)
    body = []
    for suite in suites:
        first = next((examples[s][suite][0] for s in stages if examples[s].get(suite)), None)
        if first is None:
            continue
        cells = [f"<b>{esc(suite)}</b><br>{esc(first['prompt'])}"]
        for s in stages:
            sample = (examples[s].get(suite) or [None])[0]
            if sample is None:
                cells.append("-")
            elif isinstance(sample["reply"], str):  # a base model's completion of its probe
                cells.append(f"<pre>{esc(sample['prompt'])} {esc(sample['reply'])}</pre>")
            else:
                cells.append(f"<pre>{esc(describe_messages(sample['reply'], sample.get('ended', True)))}</pre>")
        body.append(cells)
    return table(["behaviour, prompt", *stages], body)
