"""``python -m taskfsm``: the ``taskfsm`` command."""

from __future__ import annotations

if __name__ == "__main__":  # not when a "spawn" child imports this as __mp_main__
    from taskfsm.cli import main

    main()
