"""Regenerate the lifecycle diagrams from the engine's transitions machine.

Run from the repository root: ``python diagrams/generate.py``. Writes
``diagrams/task-lifecycle.mmd`` (Mermaid) and ``diagrams/task-lifecycle.svg`` (the Graphviz
dot text rendered by ``dot -Tsvg``; needs the ``dot`` program and the ``graphviz`` package).
tests/test_diagrams.py fails when the committed files differ from what this produces.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from taskfsm import TaskMachine

HERE = Path(__file__).resolve().parent
MERMAID = HERE / "task-lifecycle.mmd"
SVG = HERE / "task-lifecycle.svg"


def mermaid() -> str:
    """The Mermaid text of the default lifecycle."""
    return TaskMachine().diagram("mermaid")


def svg(dot: str = "dot") -> bytes:
    """The default lifecycle rendered to SVG by Graphviz's *dot* program.

    Raises:
        FileNotFoundError: *dot* is not installed.
        subprocess.CalledProcessError: *dot* failed.
    """
    if shutil.which(dot) is None:
        raise FileNotFoundError(
            f"Graphviz '{dot}' not found: install graphviz (apt-get install graphviz)"
        )
    result = subprocess.run(
        [dot, "-Tsvg"],
        input=TaskMachine().diagram("dot").encode(),
        capture_output=True,
        check=True,
    )
    return result.stdout


def main() -> int:
    MERMAID.write_text(mermaid(), encoding="utf-8")
    print(f"wrote {MERMAID}")
    try:
        SVG.write_bytes(svg())
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"wrote {SVG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
