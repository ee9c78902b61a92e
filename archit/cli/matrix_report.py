"""What ``archit matrix`` makes of its rows: each row's status (same / differs / fails) and the matrix as Markdown, as one
self-contained HTML page and as the README's compressed compatibility table. Pure functions of the rows (plain dicts,
as in ``matrix.json``); the columns are the probes (one for a single checkpoint), the rows the releases, in the order of
the rows given: oldest release first, as ``archit matrix`` sorts them (``releases.version_key``, the one order of
versions)."""
import html
from typing import Any, Dict, List, Optional, Sequence

SAME, DIFFERS, FAILS, UNCHECKED = "same", "differs", "fails", "unchecked"
COLOURS = {SAME: "#c8ecc9", DIFFERS: "#ffd98a", FAILS: "#f4a7a3", UNCHECKED: "#dddddd"}
MEANING = {SAME: "same outputs", DIFFERS: "loads, outputs differ beyond atol", FAILS: "fails",
           UNCHECKED: "loads, no reference to compare with"}


def classify(row: Dict[str, Any], atol: float) -> str:
    """A row's status: ``fails`` when it did not load or run, ``differs`` when its logits are further than ``atol``
    from the reference release's, ``unchecked`` when there was no reference that loaded, else ``same``."""
    if not row.get("ok"):
        return FAILS
    if row.get("max_abs_diff") is None:
        return UNCHECKED
    return DIFFERS if row["max_abs_diff"] > atol else SAME


def _releases(rows: Sequence[Dict[str, Any]]) -> List[str]:
    return list(dict.fromkeys(row["release"] for row in rows))


def _probes(rows: Sequence[Dict[str, Any]]) -> List[str]:
    return list(dict.fromkeys(row["probe"] for row in rows))


def _grid(rows: Sequence[Dict[str, Any]]) -> Dict[tuple, Dict[str, Any]]:
    return {(row["release"], row["probe"]): row for row in rows}


def first_failing(rows: Sequence[Dict[str, Any]]) -> Dict[str, Optional[str]]:
    """Per probe, the oldest release on which it fails (``None`` when it fails nowhere)."""
    grid = _grid(rows)
    return {probe: next((release for release in _releases(rows)
                         if (release, probe) in grid and grid[release, probe]["status"] == FAILS), None)
            for probe in _probes(rows)}


def diff_text(value: Optional[float]) -> str:
    if value is None:
        return "–"
    return "0" if value == 0 else f"{value:.2g}"


def _version_of(rows: Sequence[Dict[str, Any]], release: str) -> str:
    """The installed transformers version of a release (``4.57.3`` for ``4.57``)."""
    installed = {str(row["transformers"]) for row in rows if row["release"] == release and row.get("transformers")}
    return installed.pop() if len(installed) == 1 else release


def _era(rows: Sequence[Dict[str, Any]], release: str) -> str:
    eras = {str(row["era"]) for row in rows if row["release"] == release and row.get("era") is not None}
    return ", ".join(sorted(eras)) or "–"


def _cell_text(row: Optional[Dict[str, Any]]) -> str:
    if row is None:
        return ""
    if row["status"] == FAILS:
        return "fails"
    if row["status"] == UNCHECKED:
        return "loads"
    return f"{row['status']} ({diff_text(row['max_abs_diff'])})"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summary_line(rows: Sequence[Dict[str, Any]], atol: float) -> str:
    """The last line the command prints: which releases fail or differ (per probe when there are several), or that all
    give the same outputs."""
    single = len(_probes(rows)) == 1
    parts = []
    for status in (FAILS, DIFFERS, UNCHECKED):
        for probe in _probes(rows):
            versions = [row.get("transformers") or row["release"] for row in rows
                        if row["probe"] == probe and row["status"] == status]
            if versions:
                listed = ", ".join(versions) if len(versions) <= 3 else \
                    f"{versions[0]} … {versions[-1]} ({len(versions)} releases)"
                parts.append(f"{MEANING[status]} on {listed}" + ("" if single else f" ({probe})"))
    if parts:
        return "NOT THE SAME: " + "; ".join(parts) + "."
    worst = max((row["max_abs_diff"] for row in rows), default=0.0)
    return (f"same outputs on all {len(_releases(rows))} releases (max |diff| {diff_text(worst)} <= atol {atol:g}).")


def render_markdown(rows: Sequence[Dict[str, Any]], atol: float, title: str) -> str:
    """A Markdown table to paste into an issue. One probe: a row per release with status, max |logit difference|, load
    seconds, key counts and the error; several: a grid, releases by probes. A last row names each probe's first
    failing release."""
    probes, releases, grid = _probes(rows), _releases(rows), _grid(rows)
    failing = first_failing(rows)
    reference = {row["probe"]: row.get("reference") for row in rows}
    lines = [f"**{_md_escape(title)}**: max \\|logit difference\\| against the reference release "
             f"(atol {atol:g}); float32, eager attention, the same seeded input on every release.", ""]
    if len(probes) == 1:
        (probe,) = probes
        lines += ["| transformers | era | status | max \\|diff\\| | load s | initialised | unused | converted | error |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for release in releases:
            row = grid[release, probe]
            version = _version_of(rows, release) + (" (reference)" if row.get("transformers") == reference[probe]
                                                    else "")
            load = f"{row['load_seconds']:.2f}" if row.get("load_seconds") is not None else "–"
            lines.append(f"| {version} | {row.get('era') or '–'} | {row['status']} | {diff_text(row['max_abs_diff'])} "
                         f"| {load} | {len(row['initialised'])} | {len(row['unused'])} | {len(row['converted'])} | "
                         f"{_md_escape(row.get('error') or '')} |")
        lines += ["", f"First failing release: {failing[probe] or 'none'}."]
    else:
        lines += ["| transformers | era | " + " | ".join(probes) + " |", "|---|---|" + "---|" * len(probes)]
        for release in releases:
            cells = [_cell_text(grid.get((release, probe))) for probe in probes]
            lines.append(f"| {_version_of(rows, release)} | {_era(rows, release)} | " + " | ".join(cells) + " |")
        lines.append("| first failing | | " + " | ".join(failing[probe] or "none" for probe in probes) + " |")
        errors = [(release, probe, grid[release, probe]["error"]) for release in releases for probe in probes
                  if (release, probe) in grid and grid[release, probe].get("error")]
        if errors:
            lines += ["", "Errors:", ""] + [f"- {_version_of(rows, r)}, {p}: `{e}`" for r, p, e in errors]
    return "\n".join(lines) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #999; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.same { background: %(same)s; } td.differs { background: %(differs)s; } td.fails { background: %(fails)s; }
td.unchecked { background: %(unchecked)s; }
tr.first-failing td { font-weight: bold; border-top: 2px solid #333; }
table.compact { font-size: 12px; } table.compact td { white-space: nowrap; padding: 2px 5px; }
table.compact th span { writing-mode: vertical-rl; transform: rotate(180deg); white-space: nowrap; }
table.compact th { vertical-align: bottom; }
ol.notes { font-size: 12px; }
.legend span { display: inline-block; padding: 2px 8px; margin-right: 8px; border: 1px solid #999; }
code { font-size: 12px; }
""" % COLOURS


def render_html(rows: Sequence[Dict[str, Any]], atol: float, title: str) -> str:
    """One self-contained page (inline CSS, nothing fetched): the matrix coloured green (same outputs), amber (loads,
    differs beyond ``atol``) or red (fails), each cell with its max |logit difference|, and a last row naming each
    column's first failing release. With one or a few columns the cells carry the load time and the error; with many
    (the report's probes) the headers stand upright, a cell holds only its difference (``ref`` on the reference
    release) and the errors are numbered notes under the table."""
    probes, releases, grid = _probes(rows), _releases(rows), _grid(rows)
    failing = first_failing(rows)
    compact = len(probes) > 3
    esc = html.escape
    notes: List[str] = []
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>",
           f"<p><b>{esc(summary_line(rows, atol))}</b></p>",
           f"<p>Max |logit difference| against the reference release (atol {atol:g}); float32, eager attention, the "
           f"same seeded input on every release.</p>",
           '<p class="legend">' + "".join(f'<span style="background:{COLOURS[s]}">{esc(MEANING[s])}</span>'
                                          for s in (SAME, DIFFERS, FAILS)) + "</p>",
           f'<table class="{"compact" if compact else "wide"}">',
           "<tr><th>transformers</th><th>era</th>" + "".join(f"<th><span>{esc(p)}</span></th>" for p in probes)
           + "</tr>"]
    for release in releases:
        cells = []
        for probe in probes:
            row = grid.get((release, probe))
            if row is None:
                cells.append("<td></td>")
                continue
            reference = row.get("transformers") == row.get("reference") and row["ok"]
            if row["status"] == FAILS:
                notes.append(f"{esc(_version_of(rows, release))}, {esc(probe)}: <code>{esc(row['error'] or '')}</code>")
                text = f"fails <sup>{len(notes)}</sup>" if compact else \
                    f"fails<br><code>{esc(row['error'] or '')}</code>"
            elif compact:
                text = "ref" if reference else diff_text(row["max_abs_diff"])  # the colour says same/differs
            else:
                text = esc(_cell_text(row)) + (" (reference)" if reference else "")
                text += f"<br>load {row['load_seconds']:.2f} s" if row.get("load_seconds") is not None else ""
            cells.append(f'<td class="{row["status"]}" title="{esc(row.get("error") or MEANING[row["status"]])}">'
                         f"{text}</td>")
        out.append(f"<tr><td>{esc(_version_of(rows, release))}</td><td>{esc(_era(rows, release))}</td>"
                   + "".join(cells) + "</tr>")
    out.append('<tr class="first-failing"><td>first failing</td><td></td>'
               + "".join(f"<td>{esc(failing[p] or 'none')}</td>" for p in probes) + "</tr>")
    out.append("</table>")
    if compact and notes:
        out += ["<ol class=\"notes\">", *(f"<li>{note}</li>" for note in notes), "</ol>"]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def render_readme_table(rows: Sequence[Dict[str, Any]], date: str) -> str:
    """The README's compatibility table: consecutive releases with the same outcome on every probe folded into one
    line (``4.36.2 – 4.47.1``), each with its era backend and what failed or differed."""
    probes, releases, grid = _probes(rows), _releases(rows), _grid(rows)
    groups: List[list] = []
    for release in releases:
        outcome = tuple(grid[release, p]["status"] if (release, p) in grid else None for p in probes)
        era = _era(rows, release)
        if groups and groups[-1][1] == outcome and groups[-1][2] == era:
            groups[-1][0].append(release)
        else:
            groups.append([[release], outcome, era])
    lines = [f"Generated by `nox -s report` on {date}: {len(probes)} probe checkpoints (`tools/make_probes.py`) on "
             f"{len(releases)} transformers releases; float32 logits compared with the newest release.", "",
             "| transformers | era backend | outcome |", "|---|---|---|"]
    for members, outcome, era in groups:
        first, last = _version_of(rows, members[0]), _version_of(rows, members[-1])
        span = first if first == last else f"{first} – {last}"
        same = sum(1 for cell in outcome if cell == SAME)
        text = [f"{same}/{len(probes)} same outputs"]
        for status in (DIFFERS, FAILS, UNCHECKED):
            names = [p for p, cell in zip(probes, outcome) if cell == status]
            if names:
                text.append(f"{MEANING[status]}: {', '.join(names)}")
        lines.append(f"| {span} | {era} | {_md_escape('; '.join(text))} |")
    return "\n".join(lines) + "\n"
