"""What ``archit matrix`` makes of its rows: each row's status (same / differs / fails) and the matrix as Markdown, as one
self-contained HTML page and as the README's compressed compatibility table. Pure functions of the rows (plain dicts,
as in ``matrix.json``); the columns are the probes (one for a single checkpoint), the rows the releases, in the order of
the rows given: oldest release first, as ``archit matrix`` sorts them (``releases.version_key``, the one order of
versions)."""
import html
from typing import Any, Dict, List, Optional, Sequence, Tuple

SAME, DIFFERS, FAILS, UNCHECKED = "same", "differs", "fails", "unchecked"
PINNED, DEFAULTS = "pinned", "defaults"  # a row's mode: float32 and eager attention, or the release's own defaults
BROKEN = (DIFFERS, FAILS)
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


def original_rows(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The rows of the pinned load of the probes' own checkpoints (not ``--defaults``' nor ``--across-saves``')."""
    return [row for row in rows if row.get("mode", PINNED) == PINNED and row.get("saved_on") is None]


def defaults_rows(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [row for row in rows if row.get("mode") == DEFAULTS]


def across_rows(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [row for row in rows if row.get("saved_on") is not None]


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
    give the same outputs; with ``--defaults``, the diagnosis of each probe whose defaults differ; with
    ``--across-saves``, the first broken pair of each probe."""
    everything, rows = rows, original_rows(rows)
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
    for probe, diagnosis in defaults_diagnosis(everything, atol).items():
        if diagnosis:
            parts.append(diagnosis + ("" if single else f" ({probe})"))
    for probe, pair in first_broken_pair(everything).items():
        if pair:
            parts.append(_pair_text(everything, pair) + ("" if single else f" ({probe})"))
    if parts:
        return "NOT THE SAME: " + "; ".join(parts) + "."
    worst = max((row["max_abs_diff"] for row in rows), default=0.0)
    extra = ("; the same with each release's defaults" if defaults_rows(everything) else "") + \
        ("; every release loads every release's save the same" if across_rows(everything) else "")
    return (f"same outputs on all {len(_releases(rows))} releases (max |diff| {diff_text(worst)} <= atol {atol:g})"
            f"{extra}.")


def render_markdown(rows: Sequence[Dict[str, Any]], atol: float, title: str) -> str:
    """A Markdown table to paste into an issue. One probe: a row per release with status, max |logit difference|, load
    seconds, key counts and the error; several: a grid, releases by probes. A last row names each probe's first
    failing release. With ``--defaults`` and ``--across-saves``, a section each (``defaults_markdown``,
    ``across_markdown``)."""
    everything, rows = rows, original_rows(rows)
    probes, releases, grid = _probes(rows), _releases(rows), _grid(rows)
    failing = first_failing(rows)
    reference = {row["probe"]: row.get("reference") for row in rows}
    lines = [f"**{_md_escape(title)}**: max \\|logit difference\\| against the reference release "
             f"(atol {atol:g}); {_loading_text(rows)}, float32, eager attention, the same seeded input on every "
             f"release.", ""]
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
    return "\n".join(lines + defaults_markdown(everything, atol) + across_markdown(everything, atol)) + "\n"


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 14px; }
th, td { border: 1px solid #999; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eee; }
td.same { background: %(same)s; } td.differs { background: %(differs)s; } td.fails { background: %(fails)s; }
td.unchecked { background: %(unchecked)s; }
tr.first-failing td { font-weight: bold; border-top: 2px solid #333; }
tr.first-broken th, td.first-broken { font-weight: bold; } tr.first-broken th { color: #900; }
td.first-broken { outline: 3px solid #b00; }
p.broken { font-weight: bold; color: #900; font-size: 16px; }
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
    release) and the errors are numbered notes under the table. With ``--defaults`` and ``--across-saves``, a table
    each below (``defaults_html``, ``across_html``)."""
    everything, rows = rows, original_rows(rows)
    probes, releases, grid = _probes(rows), _releases(rows), _grid(rows)
    failing = first_failing(rows)
    compact = len(probes) > 3
    esc = html.escape
    notes: List[str] = []
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>{esc(title)}</title>",
           f"<style>{_CSS}</style></head><body>", f"<h1>{esc(title)}</h1>",
           f"<p><b>{esc(summary_line(everything, atol))}</b></p>",
           f"<p>Max |logit difference| against the reference release (atol {atol:g}); {esc(_loading_text(rows))}, "
           f"float32, eager attention, the same seeded input on every release.</p>",
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
    out += defaults_html(everything, atol) + across_html(everything, atol)
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _loading_text(rows: Sequence[Dict[str, Any]]) -> str:
    """How the rows loaded: archit's load, or transformers' own classes (``--transformers-class``)."""
    classes = sorted({str(row["transformers_class"]) for row in rows if row.get("loader") == "transformers"
                      and row.get("transformers_class")})
    if any(row.get("loader") == "transformers" for row in rows):
        return f"transformers' own {', '.join(classes) or 'class'} (load and save_pretrained)"
    return "archit's load and save"


def _listed(versions: Sequence[str]) -> str:
    return ", ".join(versions) if len(versions) <= 3 else f"{versions[0]} … {versions[-1]} ({len(versions)} releases)"


def _chosen(row: Optional[Dict[str, Any]]) -> str:
    """What a load chose: ``bfloat16, sdpa attention``."""
    if row is None:
        return "–"
    return f"{row.get('dtype') or '?'}, {row.get('attn_implementation') or '?'} attention"


# ---------------------------------------------------------------------------------------------------------------------
# --defaults: each release's own defaults next to the pinned load

def defaults_diagnosis(rows: Sequence[Dict[str, Any]], atol: float) -> Dict[str, Optional[str]]:
    """Per probe run with ``--defaults``: ``None`` when its defaults load gives the reference release's defaults outputs
    on every release, else the diagnosis a maintainer needs, naming the first (oldest) release whose defaults differ or
    fail and whether the pinned load differs there too: ``differs with defaults, same when pinned: first on 4.57.6
    (its defaults: float32, sdpa attention; reference 5.23.0's: bfloat16, sdpa attention)``, and the releases whose
    defaults give other outputs than their own pinned load."""
    pinned, defaults = _grid(original_rows(rows)), defaults_rows(rows)
    grid = _grid(defaults)
    found: Dict[str, Optional[str]] = {}
    for probe in _probes(defaults):
        releases = [release for release in _releases(defaults) if (release, probe) in grid]
        broken = [release for release in releases if grid[release, probe]["status"] in BROKEN]
        if not broken:
            found[probe] = None
            continue
        row, twin = grid[broken[0], probe], pinned.get((broken[0], probe))
        when_pinned = f"{twin['status'] if twin else 'not run'} when pinned"
        text = f"{row['status']} with defaults, {when_pinned}: first on {_version_of(rows, broken[0])}"
        if row["status"] == DIFFERS:
            reference = next((other for other in defaults if other["probe"] == probe and other["ok"]
                              and other.get("transformers") == row.get("reference")), None)
            text += f" (its defaults: {_chosen(row)}; reference {row.get('reference')}'s: {_chosen(reference)})"
        changed = [_version_of(rows, release) for release in releases
                   if (grid[release, probe].get("pinned_max_abs_diff") or 0.0) > atol]
        if changed:
            text += f"; the defaults give other outputs than the pinned load on {_listed(changed)}"
        found[probe] = text
    return found


def _diagnosis_text(diagnosis: Optional[str]) -> str:
    return f"{diagnosis}." if diagnosis else "the same with defaults as with the reference release."


def _defaults_intro(atol: float) -> str:
    return (f"With each release's defaults (a plain from_pretrained(checkpoint): no dtype, no attention implementation "
            f"asked for): max |logit difference| against the reference release's defaults, and against the same "
            f"release's pinned load (float32, eager attention); logits compared in float32, atol {atol:g}.")


def defaults_markdown(rows: Sequence[Dict[str, Any]], atol: float) -> List[str]:
    """The ``--defaults`` section of ``matrix.md``: per probe a row per release with the pinned and the defaults status,
    the defaults' difference from the pinned load, the dtype and attention the release chose, and the diagnosis."""
    defaults = defaults_rows(rows)
    if not defaults:
        return []
    pinned, grid, diagnoses = _grid(original_rows(rows)), _grid(defaults), defaults_diagnosis(rows, atol)
    lines = ["", f"**{_md_escape(_defaults_intro(atol)).replace('*', '')}**"]
    for probe in _probes(defaults):
        lines += ["", f"Diagnosis{'' if len(diagnoses) == 1 else f' ({probe})'}: "
                      f"{_md_escape(_diagnosis_text(diagnoses[probe]))}", "",
                  "| transformers | pinned | defaults | defaults vs pinned | dtype | attention | error |",
                  "|---|---|---|---|---|---|---|"]
        for release in _releases(defaults):
            row = grid.get((release, probe))
            if row is None:
                continue
            lines.append(f"| {_version_of(rows, release)} | {_cell_text(pinned.get((release, probe)))} | "
                         f"{_cell_text(row)} | {diff_text(row.get('pinned_max_abs_diff'))} | {row.get('dtype') or '–'} "
                         f"| {row.get('attn_implementation') or '–'} | {_md_escape(row.get('error') or '')} |")
    return lines


def defaults_html(rows: Sequence[Dict[str, Any]], atol: float) -> List[str]:
    """The ``--defaults`` section of ``matrix.html``: the diagnosis in bold, then the table of ``defaults_markdown``
    with coloured status cells."""
    defaults = defaults_rows(rows)
    if not defaults:
        return []
    esc = html.escape
    pinned, grid, diagnoses = _grid(original_rows(rows)), _grid(defaults), defaults_diagnosis(rows, atol)
    out = ["<h2>With each release's defaults</h2>", f"<p>{esc(_defaults_intro(atol))}</p>"]
    for probe in _probes(defaults):
        diagnosis = _diagnosis_text(diagnoses[probe])
        out += [f'<p class="{"broken" if diagnoses[probe] else "fine"}">Diagnosis'
                f"{'' if len(diagnoses) == 1 else f' ({esc(probe)})'}: {esc(diagnosis)}</p>", '<table class="wide">',
                "<tr><th>transformers</th><th>pinned</th><th>defaults</th><th>defaults vs pinned</th><th>dtype</th>"
                "<th>attention</th></tr>"]
        for release in _releases(defaults):
            row = grid.get((release, probe))
            if row is None:
                continue
            cells = "".join(_html_cell(cell) for cell in (pinned.get((release, probe)), row))
            versus = row.get("pinned_max_abs_diff")
            versus_class = "" if versus is None else ' class="differs"' if versus > atol else ' class="same"'
            out.append(f"<tr><td>{esc(_version_of(rows, release))}</td>{cells}<td{versus_class}>{diff_text(versus)}"
                       f"</td><td>{esc(row.get('dtype') or '–')}</td><td>{esc(row.get('attn_implementation') or '–')}"
                       f"</td></tr>")
        out.append("</table>")
    return out


def _html_cell(row: Optional[Dict[str, Any]], extra_class: str = "") -> str:
    if row is None:
        return "<td></td>"
    esc = html.escape
    text = esc(_cell_text(row)) + (f"<br><code>{esc(row['error'])}</code>" if row["status"] == FAILS
                                   and row.get("error") else "")
    return (f'<td class="{row["status"]}{extra_class}" title="{esc(row.get("error") or MEANING[row["status"]])}">'
            f"{text}</td>")


# ---------------------------------------------------------------------------------------------------------------------
# --across-saves: the saved-on x loaded-on grid

def first_broken_pair(rows: Sequence[Dict[str, Any]]) -> Dict[str, Optional[Tuple[str, str]]]:
    """Per probe run with ``--across-saves``: the first (in the rows' order: oldest save first, then oldest load) pair
    ``(saved_on, loaded_on)`` whose load differs from the reference or fails; ``None`` when there is none."""
    across = across_rows(rows)
    return {probe: next(((row["saved_on"], row["loaded_on"]) for row in across
                         if row["probe"] == probe and row["status"] in BROKEN), None) for probe in _probes(across)}


def _pair_text(rows: Sequence[Dict[str, Any]], pair: Tuple[str, str]) -> str:
    return f"first broken pair: saved on {_version_of(rows, pair[0])}, loaded on {_version_of(rows, pair[1])}"


def _across_intro(rows: Sequence[Dict[str, Any]], atol: float) -> str:
    return (f"Across saves: each release (a column) loads each release's save (a row) of the checkpoint "
            f"({_loading_text(across_rows(rows))}, pinned), compared with the reference release's load of the "
            f"original checkpoint (atol {atol:g}).")


def _across_grid(rows: Sequence[Dict[str, Any]], probe: str) -> Tuple[List[str], List[str], Dict[tuple, Dict]]:
    across = [row for row in across_rows(rows) if row["probe"] == probe]
    saved = list(dict.fromkeys(row["saved_on"] for row in across))
    loaded = list(dict.fromkeys(row["loaded_on"] for row in across))
    return saved, loaded, {(row["saved_on"], row["loaded_on"]): row for row in across}


def across_markdown(rows: Sequence[Dict[str, Any]], atol: float) -> List[str]:
    """The ``--across-saves`` section of ``matrix.md``: per probe the first broken pair, then the grid, saves by rows
    and loads by columns, the first broken pair's row and cell in bold, and the errors."""
    across = across_rows(rows)
    if not across:
        return []
    lines = ["", f"**{_md_escape(_across_intro(rows, atol))}**"]
    for probe, pair in first_broken_pair(rows).items():
        saved, loaded, grid = _across_grid(rows, probe)
        named = f" ({probe})" if len(_probes(across)) > 1 else ""
        lines += ["", (_pair_text(rows, pair).capitalize() if pair else "No broken pair") + named + ".", "",
                  "| saved on \\ loaded on | " + " | ".join(_version_of(rows, label) for label in loaded) + " |",
                  "|---|" + "---|" * len(loaded)]
        for saved_on in saved:
            bold = pair is not None and pair[0] == saved_on
            cells = [_cell_text(grid.get((saved_on, loaded_on))) for loaded_on in loaded]
            cells = [f"**{cell}**" if bold and pair == (saved_on, loaded_on) else cell
                     for cell, loaded_on in zip(cells, loaded)]
            version = _version_of(rows, saved_on)
            lines.append(f"| {f'**{version}**' if bold else version} | " + " | ".join(cells) + " |")
        errors = [(row["saved_on"], row["loaded_on"], row["error"]) for row in grid.values() if row.get("error")]
        if errors:
            lines += ["", "Errors:", ""] + [f"- saved on {_version_of(rows, saved_on)}, loaded on "
                                            f"{_version_of(rows, loaded_on)}: `{error}`"
                                            for saved_on, loaded_on, error in errors]
    return lines


def across_html(rows: Sequence[Dict[str, Any]], atol: float) -> List[str]:
    """The ``--across-saves`` section of ``matrix.html``: per probe the first broken pair named in a line above a
    coloured grid (saves by rows, loads by columns), its row in bold and its cell outlined."""
    across = across_rows(rows)
    if not across:
        return []
    esc = html.escape
    out = ["<h2>Across saves</h2>", f"<p>{esc(_across_intro(rows, atol))}</p>"]
    for probe, pair in first_broken_pair(rows).items():
        saved, loaded, grid = _across_grid(rows, probe)
        named = f" ({probe})" if len(_probes(across)) > 1 else ""
        out += [f'<p class="broken">{esc(_pair_text(rows, pair).capitalize() + named)}</p>' if pair else
                f'<p class="fine">No broken pair{esc(named)}: every release loads every save the same.</p>',
                '<table class="wide">', "<tr><th>saved on \\ loaded on</th>"
                + "".join(f"<th>{esc(_version_of(rows, label))}</th>" for label in loaded) + "</tr>"]
        for saved_on in saved:
            broken_row = pair is not None and pair[0] == saved_on
            cells = "".join(_html_cell(grid.get((saved_on, loaded_on)),
                                       " first-broken" if pair == (saved_on, loaded_on) else "")
                            for loaded_on in loaded)
            row_class = ' class="first-broken"' if broken_row else ""
            out.append(f"<tr{row_class}><th>{esc(_version_of(rows, saved_on))}</th>{cells}</tr>")
        out.append("</table>")
    return out


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
