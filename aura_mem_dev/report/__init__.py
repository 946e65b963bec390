"""Benchmark results -> markdown for docs/results/: the one place reports are rendered.

Each benchmark returns a typed result (a dataclass, saved as JSON next to its report) and
one module here turns it into markdown with the primitives below: ``perf``, ``faults``,
``synthetic``, ``closed_loop``, ``serving_latency``, ... Reports state what was measured,
how, and against which target; what the numbers mean on a particular machine (a shared VM's
slow spells, DDS transport limits) is written once in docs/results/NOTES.md, which the
reports link to.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

NOTES = "[NOTES.md](NOTES.md)"  # docs/results/NOTES.md, beside every report


def cell(text: object) -> str:
    """One table cell: a pipe would end the cell, a newline the row."""
    return " ".join(str(text).split()).replace("|", "\\|")


def table(header: Sequence[str], rows: Iterable[Sequence[object]], align: str = "") -> list[str]:
    """Markdown table lines; ``align`` has one letter per column, ``r`` right-aligns."""
    marks = ["---:" if a == "r" else "---" for a in align.ljust(len(header), "l")]
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    out += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return out


def targets(rows: Iterable[tuple[str, str, bool]]) -> list[str]:
    """The ``| target | measured | met? |`` table every report ends its figures with."""
    return table(
        ("target", "measured", "met?"), ((t, m, "yes" if ok else "**no**") for t, m, ok in rows)
    )
