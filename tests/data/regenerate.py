"""Regenerate the spec facts the tests check from the primary spec's text; run by hand, never by the tests.

Usage::

    python tests/data/regenerate.py PATH/TO/SPEC.txt

Writes, next to this script:

- ``spec_metric_bullets.json``: every ``(section, bullet text)`` of the spec's "Metrics Collected" section, in order;
  the section is the first word of its ``###`` heading, lower-cased (``hardware``, ``network``, ...).
- ``spec_payload.json``: the example JSON body of "Sending Metrics to API Principal" (the ``**Request:**`` block).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BULLETS_FILE = HERE / "spec_metric_bullets.json"
PAYLOAD_FILE = HERE / "spec_payload.json"


def metric_bullets(text: str) -> list[dict[str, str]]:
    """``{"section", "text"}`` for every bullet of the "Metrics Collected" section, in the spec's order."""
    bullets: list[dict[str, str]] = []
    section = ""
    inside = False
    for line in text.splitlines():
        if line.startswith("## "):
            inside = line.strip() == "## Metrics Collected"
            continue
        if not inside:
            continue
        if line.startswith("### "):
            section = line[4:].strip().split()[0].lower()
        elif line.startswith("- "):
            bullets.append({"section": section, "text": line[2:].strip()})
    return bullets


def example_payload(text: str) -> Any:
    """The spec's example request body, parsed."""
    block = re.search(r"\*\*Request:\*\*\s*```json\n(.*?)```", text, re.S)
    if block is None:
        raise SystemExit("the spec's **Request:** JSON example was not found")
    return json.loads(block.group(1))


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {path}")


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    text = Path(argv[1]).read_text(encoding="utf-8")
    bullets = metric_bullets(text)
    if not bullets:
        raise SystemExit("no bullets found under '## Metrics Collected'")
    _write(BULLETS_FILE, bullets)
    _write(PAYLOAD_FILE, example_payload(text))
    print(f"{len(bullets)} bullets")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
