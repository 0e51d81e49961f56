"""The README's Python examples run as written, and its diagram is the machine's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from taskfsm import TaskMachine

README = Path(__file__).resolve().parents[1] / "README.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", README.read_text(), flags=re.S | re.M)


@pytest.mark.parametrize("code", _blocks("python"), ids=lambda c: c.splitlines()[0][:40])
def test_python_examples_run(code: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the examples make tasks.db in the working directory
    exec(compile(code, str(README), "exec"), {})


def test_mermaid_diagram_is_the_machines() -> None:
    (embedded,) = _blocks("mermaid")
    assert embedded == TaskMachine().diagram("mermaid")
