"""A scratch copy of the installed transformers with the OFT fork's one commit applied.

moojink/transformers-openvla-oft is PyPI's transformers 4.40.1 plus one patch
(``bidirectional-attention.patch``: ``LlamaSdpaAttention`` attends both ways). Tests and the
GPU check rebuild it from the installed release instead of installing from git: every file
of the installed package is symlinked into ``dest/transformers`` except the patched one,
which is copied and patched (plain unified-diff application, context verified). Put
``dest`` first on ``PYTHONPATH`` of a fresh process to run on the fork.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from pathlib import Path

HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def _strip(path: str, levels: int) -> str:
    return "/".join(path.split("/")[levels:])


def parse_patch(text: str, strip: int = 2) -> dict[str, list[list[str]]]:
    """file (after stripping ``strip`` leading components) -> hunks (lines with their
    ' ', '-', '+' prefix). ``strip=2`` turns ``a/src/transformers/...`` into
    ``transformers/...``."""
    files: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    hunk: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("+++ "):
            current = files.setdefault(_strip(line[4:].strip(), strip), [])
            hunk = None
        elif line.startswith("@@") and current is not None:
            hunk = []
            current.append(hunk)
        elif hunk is not None and line[:1] in (" ", "-", "+"):
            hunk.append(line)
        elif hunk is not None and line == "":
            hunk.append(" ")  # a blank context line whose trailing space was lost
    return files


def apply_hunks(source: str, hunks: list[list[str]]) -> str:
    """Apply hunks by finding each one's old text (context + removed lines) exactly once."""
    for hunk in hunks:
        old = "\n".join(line[1:] for line in hunk if line[0] in " -")
        new = "\n".join(line[1:] for line in hunk if line[0] in " +")
        if source.count(old) != 1:
            raise ValueError(f"patch context found {source.count(old)} times, expected once")
        source = source.replace(old, new)
    return source


def make_fork(patch_file: Path, dest: Path) -> Path:
    """Build ``dest/transformers`` = installed transformers + the patch; returns ``dest``."""
    spec = importlib.util.find_spec("transformers")
    if spec is None or spec.origin is None:
        raise RuntimeError("transformers is not installed")
    src = Path(spec.origin).parent
    patched = parse_patch(Path(patch_file).read_text())
    target = dest / "transformers"
    for root, dirs, files in os.walk(src):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        rel = Path(root).relative_to(src)
        (target / rel).mkdir(parents=True, exist_ok=True)
        for name in files:
            if not name.endswith(".pyc"):
                link = target / rel / name
                if not link.exists():
                    link.symlink_to(Path(root) / name)
    for rel_path, hunks in patched.items():
        out = dest / rel_path
        original = (src.parent / rel_path).read_text()
        out.unlink(missing_ok=True)  # replace the symlink with the patched copy
        out.write_text(apply_hunks(original, hunks))
    return dest


if __name__ == "__main__":
    print(make_fork(Path(sys.argv[1]), Path(sys.argv[2])))
