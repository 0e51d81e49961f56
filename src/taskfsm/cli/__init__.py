"""The ``taskfsm`` command: operate a task store, draw the lifecycle, replay event logs and
simulate a worker fleet. ``main`` is the console script's entry point."""

from __future__ import annotations

from ._app import cli, main
from ._exit import ExitCode
from ._replay import replay
from ._simulate import simulate

cli.add_command(replay)
cli.add_command(simulate)

__all__ = ["ExitCode", "cli", "main"]
