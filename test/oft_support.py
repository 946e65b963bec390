"""Where the upstream OpenVLA-OFT code is, for the tests that run the real architecture.
Not a test module (no tests). Locations, in order: $AURA_OFT_THIRD_PARTY, then
``<repo>/../shared/third_party`` (CI clones the repo beside shared/), then
``<repo>/shared/third_party``; or an installed ``prismatic`` package (a robot install)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def third_party() -> Path | None:
    candidates = [
        os.environ.get("AURA_OFT_THIRD_PARTY", ""),
        REPO_ROOT.parent / "shared" / "third_party",
        REPO_ROOT / "shared" / "third_party",
    ]
    for c in candidates:
        if c and (Path(c) / "openvla-oft" / "prismatic").is_dir():
            return Path(c)
    return None


TP = third_party()
UPSTREAM_DIR = str(TP / "openvla-oft") if TP else ""
FORK_PATCH = TP / "transformers-openvla-oft" / "bidirectional-attention.patch" if TP else None
HAVE_UPSTREAM = TP is not None or importlib.util.find_spec("prismatic") is not None
SKIP_REASON = (
    "no upstream OpenVLA-OFT code: neither ../shared/third_party/openvla-oft (or "
    "$AURA_OFT_THIRD_PARTY) nor an installed prismatic package"
)


def run_python(
    code_or_args: str | list[str],
    pythonpath: list[str] | None = None,
    timeout: float = 300,
    env_extra: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """A fresh interpreter (its own transformers, sys.argv and environment)."""
    env = {**os.environ, **(env_extra or {})}
    for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(k, None)  # the tests check who sets them
    env["PYTHONPATH"] = os.pathsep.join([*(pythonpath or []), str(REPO_ROOT)])
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run(
        [sys.executable, *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
