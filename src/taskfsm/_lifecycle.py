"""The lifecycle graph: the only place the phases' legal changes are defined.

A `Lifecycle` is data (edges); `Lifecycle.machine()` builds the `transitions` machine
from it, which is the single source of truth for the engine, diagrams and docs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
from transitions.extensions import GraphMachine

from ._errors import InvalidArgument
from ._phase import TaskPhase

#: Condition of the retry branch of ``fail``: the failure is retryable and the policy
#: still allows a retry. Edges guarded by it count a retry.
CAN_RETRY = "can_retry"

#: Conditions the engine knows how to evaluate.
KNOWN_CONDITIONS = frozenset({CAN_RETRY})

_ACTIVE = (TaskPhase.PENDING, TaskPhase.WAITING, TaskPhase.RUNNING)


def _edges(value: Iterable[Edge]) -> tuple[Edge, ...]:
    return tuple(value)


def _phase(value: TaskPhase | str) -> TaskPhase:
    try:
        return TaskPhase(value)
    except ValueError:
        raise InvalidArgument(f"unknown phase in lifecycle: {value!r}") from None


def _phases(value: TaskPhase | str | Iterable[TaskPhase | str]) -> tuple[TaskPhase, ...]:
    items = [value] if isinstance(value, str) else list(value)
    return tuple(_phase(v) for v in items)


def _conditions(value: Iterable[str]) -> tuple[str, ...]:
    names = (value,) if isinstance(value, str) else tuple(value)
    unknown = set(names) - KNOWN_CONDITIONS
    if unknown:
        known = ", ".join(sorted(KNOWN_CONDITIONS))
        raise InvalidArgument(f"unknown condition {sorted(unknown)[0]!r} (known: {known})")
    return names


def _event_name(_: object, __: object, value: str) -> None:
    if not isinstance(value, str) or not value.isidentifier() or value.startswith("_"):
        raise InvalidArgument(f"event name must be a public identifier, got {value!r}")


@attrs.frozen
class Edge:
    """One transition of the lifecycle: *event* moves *source* phases to *dest*.

    Args:
        event: The event (trigger) name.
        source: The phase or phases the edge leaves from.
        dest: The phase it enters.
        conditions: Condition names that must all hold (see `KNOWN_CONDITIONS`).
        unless: Condition names that must all fail.
    """

    event: str = attrs.field(validator=_event_name)
    source: tuple[TaskPhase, ...] = attrs.field(converter=_phases)
    dest: TaskPhase = attrs.field(converter=_phase)
    conditions: tuple[str, ...] = attrs.field(default=(), converter=_conditions)
    unless: tuple[str, ...] = attrs.field(default=(), converter=_conditions)

    def __attrs_post_init__(self) -> None:
        # can_retry classifies the failure's error, which only the fail event carries.
        if CAN_RETRY in (*self.conditions, *self.unless) and self.event != "fail":
            raise InvalidArgument(
                f"condition {CAN_RETRY!r} needs the error of a fail event, got event {self.event!r}"
            )

    def as_transitions_dict(self) -> dict[str, Any]:
        """This edge in the form `transitions` takes (``trigger``, ``source``, ...)."""
        spec: dict[str, Any] = {
            "trigger": self.event,
            "source": [p.value for p in self.source],
            "dest": self.dest.value,
        }
        if self.conditions:
            spec["conditions"] = list(self.conditions)
        if self.unless:
            spec["unless"] = list(self.unless)
        return spec


@attrs.frozen
class Lifecycle:
    """A task lifecycle: the phases' legal changes, as ordered edges.

    Edges of one event from one phase are tried in order, the first whose conditions
    hold wins, exactly as `transitions` evaluates them.

    Args:
        edges: The transitions, in evaluation order.
        initial: The phase of a new task.
        title: Title of generated diagrams.
    """

    edges: tuple[Edge, ...] = attrs.field(converter=_edges)
    initial: TaskPhase = attrs.field(default=TaskPhase.PENDING, converter=_phase)
    title: str = "Task lifecycle"

    @property
    def events(self) -> tuple[str, ...]:
        """Event names, in order of first appearance."""
        return tuple(dict.fromkeys(e.event for e in self.edges))

    def with_edge(
        self,
        event: str,
        source: TaskPhase | str | Iterable[TaskPhase | str],
        dest: TaskPhase | str,
        *,
        conditions: Iterable[str] = (),
        unless: Iterable[str] = (),
    ) -> Lifecycle:
        """Return a variant with one more edge, tried after the existing ones.

        Example: ``DEFAULT_LIFECYCLE.with_edge("complete", "waiting", "completed")``.
        """
        edge = Edge(event, source, dest, conditions, unless)  # Edge's converters validate
        return attrs.evolve(self, edges=(*self.edges, edge))

    def without_edge(
        self,
        event: str,
        source: TaskPhase | str | Iterable[TaskPhase | str] | None = None,
    ) -> Lifecycle:
        """Return a variant where *event* no longer leaves *source* (every phase if None).

        Raises:
            InvalidArgument: No edge of *event* leaves those phases.
        """
        drop = set(TaskPhase) if source is None else set(_phases(source))
        edges: list[Edge] = []
        removed = False
        for edge in self.edges:
            if edge.event != event:
                edges.append(edge)
                continue
            keep = tuple(p for p in edge.source if p not in drop)
            removed = removed or len(keep) < len(edge.source)
            if keep:
                edges.append(attrs.evolve(edge, source=keep))
        if not removed:
            raise InvalidArgument(f"no {event!r} edge leaves {sorted(p.value for p in drop)}")
        return attrs.evolve(self, edges=tuple(edges))

    def machine(self) -> GraphMachine:
        """Build the `transitions` machine of this lifecycle (no model attached)."""
        return GraphMachine(
            model=None,
            states=[p.value for p in TaskPhase],
            initial=self.initial.value,
            transitions=[e.as_transitions_dict() for e in self.edges],
            auto_transitions=False,
            send_event=True,
            title=self.title,
            show_conditions=True,
            graph_engine="mermaid",
        )


#: The default lifecycle: the event table of DESIGN.md.
DEFAULT_LIFECYCLE = Lifecycle(
    edges=(
        Edge("schedule", TaskPhase.PENDING, TaskPhase.WAITING),
        Edge("start", TaskPhase.WAITING, TaskPhase.RUNNING),
        Edge("progress", TaskPhase.RUNNING, TaskPhase.RUNNING),
        Edge("heartbeat", TaskPhase.RUNNING, TaskPhase.RUNNING),
        Edge("complete", TaskPhase.RUNNING, TaskPhase.COMPLETED),
        # The failure->retry path: retry branch first, then the final failure.
        Edge("fail", _ACTIVE, TaskPhase.WAITING, conditions=(CAN_RETRY,)),
        Edge("fail", _ACTIVE, TaskPhase.FAILED),
        Edge("cancel", _ACTIVE, TaskPhase.CANCELLED),
        Edge("restart", (TaskPhase.FAILED, TaskPhase.CANCELLED), TaskPhase.WAITING),
    ),
)
