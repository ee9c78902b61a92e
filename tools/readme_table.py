"""Regenerate the README's compatibility table from a ``matrix.json`` of ``archit matrix --probes`` (``nox -s report``
runs it after the matrix): the lines between ``<!-- compatibility table: begin ... -->`` and ``<!-- compatibility
table: end -->`` are replaced, dated today (UTC).

    python tools/readme_table.py report/matrix.json README.md
"""
import datetime
import json
import re
import sys
from pathlib import Path

from archit.cli.matrix_report import render_readme_table

MARKERS = re.compile(r"(<!-- compatibility table: begin.*?-->\n).*?(<!-- compatibility table: end -->)", re.DOTALL)


def update_readme(matrix_json: Path, readme: Path) -> None:
    rows = json.loads(matrix_json.read_text())
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    table = render_readme_table(rows, date)
    text, count = MARKERS.subn(lambda match: match.group(1) + table + match.group(2), readme.read_text())
    if count != 1:
        sys.exit(f"{readme} lacks the <!-- compatibility table: begin --> ... <!-- compatibility table: end --> markers")
    readme.write_text(text)


if __name__ == "__main__":
    update_readme(Path(sys.argv[1]), Path(sys.argv[2]))
