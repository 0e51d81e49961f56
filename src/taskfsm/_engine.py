"""`TaskMachine`: the pure rule engine, ``(status, event) -> new status``. No I/O."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
from transitions.extensions import GraphMachine

from ._errors import IllegalTransition, InvalidArgument, TaskFSMError
from ._lifecycle import CAN_RETRY, DEFAULT_LIFECYCLE, Lifecycle
from ._phase import TaskPhase
from ._policy import RetryPolicy
from ._status import TaskStatus, is_valid_progress, trusted_status

log = logging.getLogger("taskfsm")

Clock = Callable[[], int]
#: Called after each accepted transition with (old status, new status, event).
Listener = Callable[[TaskStatus, TaskStatus, str], None]


def system_clock() -> int:
    """Wall-clock time in integer milliseconds since the epoch."""
    return time.time_ns() // 1_000_000


# Arguments each event takes: (required, optional). Events a variant adds take none.
_ARGS: Mapping[str, tuple[frozenset[str], frozenset[str]]] = {
    "progress": (frozenset({"value"}), frozenset()),
    "fail": (frozenset({"error"}), frozenset({"retryable"})),
}
_NO_ARGS: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())

#: A compiled (phase, event): ``(status, kwargs) -> new status``; raises like `apply`.
_Step = Callable[[TaskStatus, dict[str, Any]], TaskStatus]

# Field values the argument-free events set; _KEEP copies the previous value.
_KEEP: Any = object()
_NO_ARG_EFFECTS: Mapping[str, tuple[Any, Any, Any]] = {
    "start": (0.0, _KEEP, _KEEP),
    "complete": (1.0, None, _KEEP),
    "restart": (None, None, 0),
}
_KEEP_ALL = (_KEEP, _KEEP, _KEEP)


@attrs.frozen
class _Branch:
    dest: TaskPhase
    # (condition name, the value it must have); `unless` entries want False.
    checks: tuple[tuple[str, bool], ...]
    counts_retry: bool


def _compile(
    machine: GraphMachine,
) -> tuple[dict[tuple[TaskPhase, str], tuple[_Branch, ...]], dict[TaskPhase, frozenset[str]]]:
    """Read the transitions machine into a lookup table: (phase, event) -> branches."""
    table: dict[tuple[TaskPhase, str], tuple[_Branch, ...]] = {}
    for name, event in machine.events.items():
        for source, transitions in event.transitions.items():
            table[(TaskPhase(source), name)] = tuple(
                _Branch(
                    dest=TaskPhase(t.dest),
                    checks=tuple((str(c.func), bool(c.target)) for c in t.conditions),
                    counts_retry=any(c.func == CAN_RETRY and c.target for c in t.conditions),
                )
                for t in transitions
            )
    allowed = {
        phase: frozenset(event for (src, event) in table if src is phase) for phase in TaskPhase
    }
    return table, allowed


def _error_text(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    return str(error) or type(error).__name__


class TaskMachine:
    """The task lifecycle engine: applies events to immutable `TaskStatus` snapshots.

    A pure function of (status, event, clock, policy); safe to share between threads.

    Args:
        policy: The retry policy; the Livepeer-compatible default when None.
        clock: ``() -> int`` milliseconds since the epoch; the system clock when None.
        lifecycle: The lifecycle graph; `DEFAULT_LIFECYCLE` when None.
        listeners: Callbacks run after each accepted transition with
            (old status, new status, event). One that raises is logged and ignored.
    """

    def __init__(
        self,
        policy: RetryPolicy | None = None,
        clock: Clock | None = None,
        *,
        lifecycle: Lifecycle | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self.policy = policy if policy is not None else RetryPolicy()
        self.clock: Clock = clock if clock is not None else system_clock
        self.lifecycle = lifecycle if lifecycle is not None else DEFAULT_LIFECYCLE
        self._machine = self.lifecycle.machine()
        self._table, self._allowed = _compile(self._machine)
        # The hot path: phase -> event -> step, each specialised once, here.
        self._steps: dict[TaskPhase, dict[str, _Step]] = {phase: {} for phase in TaskPhase}
        for (phase, event), branches in self._table.items():
            self._steps[phase][event] = self._step(event, branches)
        self._listeners: tuple[Listener, ...] = tuple(listeners)

    @property
    def machine(self) -> GraphMachine:
        """The `transitions` machine: the single source of truth for the graph."""
        return self._machine

    # -- listeners ------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Run *listener* after every accepted transition."""
        self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        """Stop running *listener*; no error if it was not added."""
        self._listeners = tuple(cb for cb in self._listeners if cb is not listener)

    # -- queries --------------------------------------------------------------------

    def allowed_events(self, status: TaskStatus) -> frozenset[str]:
        """The events the lifecycle allows from *status*'s phase."""
        return self._allowed[status.phase]

    def can(self, status: TaskStatus, event: str, **kwargs: Any) -> bool:
        """Would `apply` accept *event* (with *kwargs*) now? Never raises for bad input."""
        step = self._steps[status.phase].get(event)
        if step is None:
            return False
        try:
            step(status, kwargs)
        except TaskFSMError:
            return False
        return True

    def retry_delay(self, status: TaskStatus) -> float:
        """Seconds a task in *status* waits before it is due: the policy's delay for a
        retried waiting task, else 0.0. With jitter, each call draws anew."""
        if status.phase is TaskPhase.WAITING and status.retries > 0:
            return self.policy.delay(status.retries)
        return 0.0

    def due_at(self, status: TaskStatus) -> int:
        """When a task in *status* is due to be started, in ms since the epoch."""
        return status.updated_at + round(self.retry_delay(status) * 1000)

    # -- transitions ----------------------------------------------------------------

    def new(self) -> TaskStatus:
        """A new task's status: the initial phase, stamped now, retries 0."""
        return trusted_status(self.lifecycle.initial, self._now(0), None, None, 0)

    def apply(self, status: TaskStatus, event: str, **kwargs: Any) -> TaskStatus:
        """Apply *event* to *status* and return the new snapshot; *status* is untouched.

        Args:
            status: The current status.
            event: The event name (see the lifecycle's events).
            **kwargs: The event's arguments: ``value`` for progress; ``error`` and
                ``retryable`` for fail.

        Returns:
            The new status, with ``updated_at`` stamped (never earlier than before).

        Raises:
            IllegalTransition: The event is not allowed from the status's phase.
            InvalidArgument: The event's arguments are missing or invalid.
        """
        return self._run(status, event, kwargs)

    def decide(self, status: TaskStatus, event: str, **kwargs: Any) -> TaskStatus:
        """`apply` without running the listeners: for callers that commit the new status
        elsewhere (the stores) and call `notify` once it is committed.

        Raises:
            IllegalTransition: The event is not allowed from the status's phase.
            InvalidArgument: The event's arguments are missing or invalid.
        """
        step = self._steps[status.phase].get(event)
        if step is None:
            raise IllegalTransition(event, status.phase, self._allowed[status.phase])
        return step(status, kwargs)

    def notify(self, old: TaskStatus, new: TaskStatus, event: str) -> None:
        """Run the listeners for a transition from *old* to *new* by *event*, as `apply`
        does; a listener that raises is logged and the others still run."""
        if self._listeners:
            self._notify(old, new, event)

    def schedule(self, status: TaskStatus) -> TaskStatus:
        """pending -> waiting."""
        return self._run(status, "schedule", {})

    def start(self, status: TaskStatus) -> TaskStatus:
        """waiting -> running; progress 0."""
        return self._run(status, "start", {})

    def progress(self, status: TaskStatus, value: float) -> TaskStatus:
        """Report progress of a running task: within [0, 1], never decreasing."""
        return self._run(status, "progress", {"value": value})

    def heartbeat(self, status: TaskStatus) -> TaskStatus:
        """A liveness signal from a running task: only ``updated_at`` changes."""
        return self._run(status, "heartbeat", {})

    def complete(self, status: TaskStatus) -> TaskStatus:
        """running -> completed; progress 1."""
        return self._run(status, "complete", {})

    def fail(
        self, status: TaskStatus, error: BaseException | str, retryable: bool | None = None
    ) -> TaskStatus:
        """A failure: back to waiting (retries + 1) when retryable and the policy allows
        another retry, else failed. *retryable* None lets the policy classify *error*."""
        return self._run(status, "fail", {"error": error, "retryable": retryable})

    def cancel(self, status: TaskStatus) -> TaskStatus:
        """pending, waiting or running -> cancelled."""
        return self._run(status, "cancel", {})

    def restart(self, status: TaskStatus) -> TaskStatus:
        """failed or cancelled -> waiting, with a fresh retry budget."""
        return self._run(status, "restart", {})

    # -- diagrams -------------------------------------------------------------------

    def diagram(self, fmt: Literal["mermaid", "dot"] = "mermaid") -> str:
        """The lifecycle diagram as Mermaid or Graphviz dot text, made by `transitions`.

        Raises:
            InvalidArgument: *fmt* is neither "mermaid" nor "dot".
            TaskFSMError: "dot" was asked for but the ``graphviz`` package is missing.
        """
        if fmt == "mermaid":
            from transitions.extensions.diagrams_mermaid import Graph as MermaidGraph

            graph: Any = MermaidGraph(self._machine)  # type: ignore[arg-type]  # stub says type
            return str(graph.get_graph().source) + "\n"
        if fmt == "dot":
            from transitions.extensions import diagrams_graphviz

            if getattr(diagrams_graphviz, "pgv", None) is None:
                raise TaskFSMError(
                    "dot diagrams need the 'graphviz' package: pip install 'taskfsm[diagrams]'"
                )
            dot: Any = diagrams_graphviz.Graph(self._machine)  # type: ignore[arg-type]
            return str(dot.get_graph().source)
        raise InvalidArgument(f"diagram format must be 'mermaid' or 'dot', got {fmt!r}")

    # -- internals ------------------------------------------------------------------

    def _now(self, previous: int) -> int:
        now = self.clock()
        return now if now > previous else previous

    def _run(self, status: TaskStatus, event: str, kwargs: dict[str, Any]) -> TaskStatus:
        # `decide` then `notify`, without **kwargs packing: the per-event methods' hot path.
        step = self._steps[status.phase].get(event)
        if step is None:
            raise IllegalTransition(event, status.phase, self._allowed[status.phase])
        new = step(status, kwargs)
        if self._listeners:
            self._notify(status, new, event)
        return new

    def _notify(self, old: TaskStatus, new: TaskStatus, event: str) -> None:
        for listener in self._listeners:
            try:
                listener(old, new, event)
            except Exception:
                log.exception("taskfsm listener %r failed on %s", listener, event)

    def _step(self, event: str, branches: tuple[_Branch, ...]) -> _Step:
        """Compile one (phase, event) of the table into its step function.

        An unguarded single branch of a default event gets a specialised closure; anything
        else (guards, ``fail``) runs the general `_decide`. Both check the arguments, pick
        the branch and apply the effect in the same order, with the same errors.
        """
        if len(branches) != 1 or branches[0].checks or event == "fail":

            def decide(st: TaskStatus, kwargs: dict[str, Any]) -> TaskStatus:
                return self._decide(st, event, branches, kwargs)

            return decide
        dest = branches[0].dest
        new = trusted_status
        if event == "progress":

            def progress(st: TaskStatus, kwargs: dict[str, Any]) -> TaskStatus:
                if len(kwargs) != 1 or "value" not in kwargs:
                    _check_args(event, kwargs)
                value = kwargs["value"]
                if type(value) is not float or not 0.0 <= value <= 1.0:
                    _check_args(event, kwargs)  # ints, float subclasses; raises if invalid
                current = st.progress
                if current is not None and value < current:
                    raise _decreasing(current, value)
                now = self.clock()
                previous = st.updated_at
                return new(
                    dest,
                    now if now > previous else previous,
                    float(value),
                    st.error_message,
                    st.retries,
                )

            return progress
        set_progress, set_error, set_retries = _NO_ARG_EFFECTS.get(event, _KEEP_ALL)

        def no_args(st: TaskStatus, kwargs: dict[str, Any]) -> TaskStatus:
            if kwargs:
                _check_args(event, kwargs)
            now = self.clock()
            previous = st.updated_at
            return new(
                dest,
                now if now > previous else previous,
                st.progress if set_progress is _KEEP else set_progress,
                st.error_message if set_error is _KEEP else set_error,
                st.retries if set_retries is _KEEP else set_retries,
            )

        return no_args

    def _decide(
        self,
        status: TaskStatus,
        event: str,
        branches: tuple[_Branch, ...],
        kwargs: dict[str, Any],
    ) -> TaskStatus:
        _check_args(event, kwargs)
        for branch in branches:
            if all(self._holds(name, status, kwargs) is want for name, want in branch.checks):
                break
        else:  # every branch was guarded and none held
            raise IllegalTransition(event, status.phase, self._allowed[status.phase])
        return self._effect(status, event, branch, kwargs)

    def _holds(self, condition: str, status: TaskStatus, kwargs: dict[str, Any]) -> bool:
        # _lifecycle.KNOWN_CONDITIONS lists every name that can reach here.
        assert condition == CAN_RETRY
        return self.policy.is_retryable(
            kwargs["error"], kwargs.get("retryable")
        ) and self.policy.allows(status.retries)

    def _effect(
        self, st: TaskStatus, event: str, branch: _Branch, kwargs: dict[str, Any]
    ) -> TaskStatus:
        progress, error, retries = st.progress, st.error_message, st.retries
        if event == "progress":
            value = kwargs["value"]
            if progress is not None and value < progress:
                raise _decreasing(progress, value)
            progress = float(value)
        elif event == "fail":
            progress, error = None, _error_text(kwargs["error"])
            if branch.counts_retry:
                retries += 1
        else:
            set_progress, set_error, set_retries = _NO_ARG_EFFECTS.get(event, _KEEP_ALL)
            if set_progress is not _KEEP:
                progress = set_progress
            if set_error is not _KEEP:
                error = set_error
            if set_retries is not _KEEP:
                retries = set_retries
        return trusted_status(branch.dest, self._now(st.updated_at), progress, error, retries)


def _decreasing(current: float, value: float) -> InvalidArgument:
    return InvalidArgument(f"progress must not decrease: {current} -> {value}")


def _check_args(event: str, kwargs: dict[str, Any]) -> None:
    required, optional = _ARGS.get(event, _NO_ARGS)
    for name in kwargs:
        if name not in required and name not in optional:
            takes = ", ".join(sorted(required | optional)) or "no arguments"
            raise InvalidArgument(f"{event} got an unexpected argument {name!r} (takes: {takes})")
    for name in required:
        if name not in kwargs:
            raise InvalidArgument(f"{event} needs the argument {name!r}")
    if event == "progress" and not is_valid_progress(kwargs["value"]):
        raise InvalidArgument(f"progress must be within [0, 1], got {kwargs['value']!r}")
    if event == "fail":
        error = kwargs["error"]
        if not isinstance(error, (str, BaseException)):
            raise InvalidArgument(f"fail error must be a string or an exception, got {error!r}")
        retryable = kwargs.get("retryable")
        if retryable is not None and not isinstance(retryable, bool):
            raise InvalidArgument(f"fail retryable must be True, False or None, got {retryable!r}")
