"""MkDocs hooks: the benchmarks page shows every committed result table of
``benchmarks/results/*.md`` (new results appear without editing the docs), and the streaming
deployment guide ``streaming.md`` joins the guides as soon as it exists."""

from __future__ import annotations

import re
from pathlib import Path

MARKER = "<!-- benchmark-results -->"
RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def _demote(markdown: str) -> str:
    # each result file's own headings sit one level below the page's
    return re.sub(r"^(#{1,5}) ", r"#\1 ", markdown, flags=re.MULTILINE)


def on_page_markdown(markdown: str, page, config, files) -> str:
    if MARKER not in markdown:
        return markdown
    parts = []
    for path in sorted(RESULTS.glob("*.md")):
        parts.append(f"<!-- {path.name} -->\n\n" + _demote(path.read_text().strip()))
        parts.append(f"*Source: `benchmarks/results/{path.name}`.*")
    if not parts:
        parts.append("No benchmark results are committed yet.")
    return markdown.replace(MARKER, "\n\n".join(parts))


def on_config(config):
    docs = Path(config["docs_dir"])
    if not (docs / "streaming.md").is_file():
        return config
    for entry in config["nav"] or []:
        guides = entry.get("Guides") if isinstance(entry, dict) else None
        if guides is not None and not any("streaming.md" in g.values() for g in guides):
            guides.insert(1, {"Streaming deployment": "streaming.md"})
    return config
