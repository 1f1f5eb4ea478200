"""The tasks a function starts during a pass, and whether they have all settled.

A pass runs the function in a context where ``_OWNER`` names the pass's ``Branches``. While any
pass runs on a loop, the loop's task factory is ``_Hook`` (chained to the factory it found): a
task created in such a context (``create_task``, ``gather``, ``TaskGroup``, ``wait_for``, and the
function's own task) gets its coroutine wrapped in ``_Traced``, which remembers what the task
awaits each time it yields to the loop. ``Branches`` reads that to tell, without counting loop
turns, whether any task of the function is ready to run (``quiet``) and whether every one waits
for the engine (``settled``): done, blocked on a step call, or waiting on its own tasks that
are. Tasks created elsewhere (the engine's, step bodies') are never wrapped.
"""

from __future__ import annotations

import asyncio
import asyncio.tasks
import inspect
import sys
import weakref
from collections.abc import Callable, Coroutine, Generator
from contextvars import Context, ContextVar, copy_context
from types import FrameType
from typing import Any

from stepline.engine._ops import Suspended, _Abort

_OWNER: ContextVar[Branches | None] = ContextVar("stepline_branches", default=None)
_NEW = object()  # what a task not started yet "awaits": it is ready to run
# what a task awaiting its own tasks awaits: gather's future (asyncio's private class, stable
# since 3.4), or a plain future awaited in TaskGroup's exit, asyncio.wait or 3.11's wait_for (and
# anyio's task group on asyncio, once anyio is imported: ``_joining_code``)
_GATHERING: type | None = getattr(asyncio.tasks, "_GatheringFuture", None)
_JOINING_CODE = {
    code
    for code in (
        getattr(asyncio.TaskGroup.__aexit__, "__code__", None),
        getattr(getattr(asyncio.tasks, "_wait", None), "__code__", None),
        getattr(asyncio.wait_for, "__code__", None),
    )
    if code is not None
}
# the engine's signals raised into step calls a pass releases (``StepGate``): a task ending
# with one is the engine's to retrieve
_SIGNALS = (Suspended, _Abort)
_TaskFactory = Callable[..., "asyncio.Future[Any]"]
_ANYIO_BACKEND = "anyio._backends._asyncio"  # its TaskGroup awaits in __aexit__ what its tasks end


def _joining_code() -> set[Any]:
    """The code of the coroutines that await their own tasks: asyncio's, and anyio's task group
    exit once anyio's asyncio backend is imported (never imported here)."""
    backend = sys.modules.get(_ANYIO_BACKEND)
    if backend is not None and backend not in _ANYIO_SEEN:
        _ANYIO_SEEN.add(backend)
        exit_code = getattr(
            getattr(getattr(backend, "TaskGroup", None), "__aexit__", None), "__code__", None
        )
        if exit_code is not None:
            _JOINING_CODE.add(exit_code)
    return _JOINING_CODE


_ANYIO_SEEN: set[Any] = set()


def _nested_code(function: Any, name: str) -> Any:
    consts = getattr(getattr(function, "__code__", None), "co_consts", ())
    return next((c for c in consts if getattr(c, "co_name", None) == name), None)


# the done callbacks by which asyncio.shield completes its outer future, and gather its own
_SHIELD_DONE = _nested_code(asyncio.shield, "_inner_done_callback")
_GATHER_DONE = _nested_code(asyncio.gather, "_done_callback")
_GATHER_CODE = getattr(asyncio.gather, "__code__", None)
_WAIT_FOR_CODE = getattr(asyncio.wait_for, "__code__", None)
# the joins that make a task of a coroutine they were given, held by nobody else (wait_for on
# Python 3.11 only: from 3.12 on it awaits the coroutine itself)
_PRIVATE_MAKERS = {code for code in (_GATHER_CODE, _WAIT_FOR_CODE) if code is not None}
# the code flags of a frame that awaits (the coroutine asking for a task), and how far up a
# factory's caller that frame is looked for (factories chained over the hook add frames)
_AWAITING = inspect.CO_COROUTINE | inspect.CO_ITERABLE_COROUTINE | inspect.CO_ASYNC_GENERATOR
_MAX_MAKER_DEPTH = 16


def _made_privately() -> bool:
    """True if the task being created is one ``gather`` or ``wait_for`` makes of a coroutine
    (or other awaitable) it was given: asked from the task factory. The frames between the
    factory and the coroutine that asked for the task (the loop's ``create_task``,
    ``ensure_future``'s helpers, ``gather``, factories chained over the hook) are plain
    functions; the first coroutine frame up is the one that awaits: ``wait_for`` itself on
    Python 3.11 (private), else the function's code (not private, even when a ``wait_for``
    awaiting it directly, as from 3.12 on, sits above it)."""
    frame: FrameType | None = sys._getframe(2)  # the task factory's caller
    for _ in range(_MAX_MAKER_DEPTH):
        if frame is None:
            return False
        code = frame.f_code
        if code in _PRIVATE_MAKERS:
            return True
        if code.co_flags & _AWAITING:
            return False
        frame = frame.f_back
    return False


def _outer(source: object, code: Any) -> Any:
    """The futures the done callbacks of ``source`` made by ``code`` complete (their closure's
    ``outer``)."""
    found = []
    for callback, *_ in getattr(source, "_callbacks", None) or ():
        if code is None or getattr(callback, "__code__", None) is not code:
            continue
        try:
            cell = callback.__closure__[callback.__code__.co_freevars.index("outer")]
            found.append(cell.cell_contents)
        except (ValueError, IndexError, TypeError):  # not the shape asyncio's has
            continue
    return found


def _shields(kid: asyncio.Task[Any], future: object) -> bool:
    """True if ``future`` is the outer future of an ``asyncio.shield`` of ``kid``, or of a
    ``gather`` that ``kid`` is a child of."""
    inner = [kid, *_outer(kid, _GATHER_DONE)]
    return any(outer is future for source in inner for outer in _outer(source, _SHIELD_DONE))


def _orphaned(task: asyncio.Task[Any], traced: _Traced) -> bool:
    """True if ``task`` runs on as a child of a ``gather`` or a ``TaskGroup`` whose joining
    task (gather's caller, the task in the group's ``async with``) has ended, and the group or
    the gather made it (of a coroutine it was given): a task the function made and passed to
    ``gather`` may be held elsewhere (a cache), it is not gather's to end (``private``)."""
    if task.done():
        return False
    for callback, *_ in getattr(task, "_callbacks", None) or ():
        if getattr(callback, "__code__", None) is _GATHER_DONE and _GATHER_DONE is not None:
            if not traced.private:
                continue
            joiner = traced.parent
        elif isinstance(getattr(callback, "__self__", None), asyncio.TaskGroup):
            joiner = getattr(callback.__self__, "_parent_task", None)
        else:
            continue
        if joiner is None or joiner.done():
            return True
    return False


def _nothing() -> None:
    return None


def _never(_: object) -> bool:
    return False


class _Traced(Coroutine[Any, Any, Any]):
    """A task's coroutine, remembering what it yielded last (the future its task awaits, or
    ``None`` for a bare yield: ready again at the next loop turn)."""

    __slots__ = ("coro", "owner", "parent", "private", "waiting")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        owner: Branches,
        parent: asyncio.Task[Any] | None,
        *,
        private: bool = False,
    ) -> None:
        self.coro = coro
        self.owner = owner
        self.parent = parent  # the task that created this one (gather's, a TaskGroup's caller)
        # made by gather or wait_for of a coroutine it was given (_made_privately): only that
        # join holds it
        self.private = private
        self.waiting: object = _NEW

    def send(self, value: Any) -> Any:
        self.waiting = yielded = self.coro.send(value)
        self.owner.changed()
        return yielded

    def throw(self, typ: Any, val: Any = None, tb: Any = None, /) -> Any:
        if val is None and tb is None:
            yielded = self.coro.throw(typ)
        else:  # the legacy signature, as asked
            yielded = self.coro.throw(typ, val, tb)
        self.waiting = yielded
        self.owner.changed()
        return yielded

    def close(self) -> None:
        self.coro.close()

    def joining(self) -> bool:
        """True if the task awaits a ``gather`` of tasks, or awaits in a ``TaskGroup``'s exit,
        ``asyncio.wait`` or ``asyncio.wait_for`` (the innermost coroutine it awaits through:
        its ``cr_await`` chain); not if it awaits anything else (I/O, a timer, an event)."""
        if _GATHERING is not None and isinstance(self.waiting, _GATHERING):
            return True
        return getattr(self._innermost(), "cr_code", None) in _joining_code()

    def timed(self) -> object:
        """The future an ``asyncio.wait_for`` the task is in waits for, or ``None``: on Python
        3.11 the task then awaits a future of wait_for's own, and wait_for cancels the one it
        was given when the task is cancelled (from 3.12 on the task awaits that one)."""
        inner = self._innermost()
        frame = getattr(inner, "cr_frame", None)
        if frame is None or getattr(inner, "cr_code", None) is not _WAIT_FOR_CODE:
            return None
        given = frame.f_locals.get("fut")
        return given if isinstance(given, asyncio.Future) else None

    def _innermost(self) -> Any:
        """The innermost coroutine the task awaits through (its ``cr_await`` chain): the one
        awaiting the future the task yielded."""
        inner: Any = self.coro
        while True:
            awaited = getattr(inner, "cr_await", None) or getattr(inner, "gi_yieldfrom", None)
            if awaited is None or not hasattr(awaited, "cr_code"):
                return inner
            inner = awaited

    def describe(self, task: asyncio.Task[Any]) -> str:
        """The task's name and its coroutine's qualified name, for a log line."""
        return f"{task.get_name()} ({getattr(self.coro, '__qualname__', type(self.coro).__name__)})"

    def __await__(self) -> Generator[Any, None, Any]:
        return self.coro.__await__()

    def __getattr__(self, name: str) -> Any:  # cr_frame, cr_code, __qualname__... (reprs, stacks)
        return getattr(self.coro, name)


class _Hook:
    """A loop's task factory while passes run on it: wraps the coroutine of a task created in a
    function's context, then creates the task as the factory it replaced would."""

    def __init__(self, previous: _TaskFactory | None) -> None:
        self.previous = previous
        self.users = 0

    def __call__(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Future[Any]:
        context: Context | None = kwargs.get("context")
        owner = _OWNER.get() if context is None else context.get(_OWNER)
        traced = None
        if owner is not None and owner.open and not isinstance(coro, _Traced):
            current = asyncio.current_task(loop)
            traced = coro = _Traced(coro, owner, current, private=_made_privately())
        if self.previous is None:
            task: asyncio.Future[Any] = asyncio.Task(coro, loop=loop, **kwargs)
        else:
            task = self.previous(loop, coro, **kwargs)
        if traced is not None and isinstance(task, asyncio.Task):
            traced.owner.adopt(task, traced)
        return task


_HOOKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Hook] = weakref.WeakKeyDictionary()


def _acquire(loop: asyncio.AbstractEventLoop) -> None:
    """One more pass runs on ``loop``: its task factory is a ``_Hook`` (the one the last pass
    left, or a new one chaining a factory set over it meanwhile, which takes over its count)."""
    hook = _HOOKS.get(loop)
    users = 0 if hook is None else hook.users
    if hook is not None and loop.get_task_factory() is hook:
        _HOOKS[loop].users += 1
        return
    fresh = _Hook(loop.get_task_factory())
    fresh.users = 1 + users
    loop.set_task_factory(fresh)
    _HOOKS[loop] = fresh


def _release(loop: asyncio.AbstractEventLoop) -> None:
    """One pass less runs on ``loop``: after the last, the loop gets back the factory its hook
    replaced (unless another factory was set over the hook meanwhile: that one stays)."""
    hook = _HOOKS[loop]
    hook.users -= 1
    if hook.users == 0:
        del _HOOKS[loop]
        if loop.get_task_factory() is hook:
            loop.set_task_factory(hook.previous)


class Branches:
    """The live tasks of one pass's function, and the questions a pass asks about them.

    ``is_step(future)`` tells a step call's future; ``changed()`` is called whenever a task
    yields, starts or ends (the pass re-reads the state then). ``sync``: the function runs in
    a thread (its step calls are tasks made in its context). ``context`` hooks the loop's task
    factory, ``stop`` gives it back when no other pass uses it.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        is_step: Callable[[object], bool],
        changed: Callable[[], None],
        *,
        sync: bool,
    ) -> None:
        self.live: dict[asyncio.Task[Any], _Traced] = {}
        self.open = True
        self._changed = changed
        self._is_step = is_step
        self._loop = loop
        self._sync = sync
        self._hooked = False
        self._foreign: list[asyncio.Future[Any]] = []  # step calls of threads a sync fn started

    def context(self) -> Context:
        """A copy of the current context in which this pass's function runs: the tasks created
        in it (and in the contexts they copy) are this pass's branches."""
        if not self._hooked:
            _acquire(self._loop)
            self._hooked = True
        context = copy_context()
        context.run(_OWNER.set, self)
        return context

    def start(self, coro: Coroutine[Any, Any, Any], context: Context) -> asyncio.Task[Any]:
        """The function's own task, made of ``coro`` in ``context`` (``context()``) and tracked
        as a branch: wrapped here, as the loop's task factory would wrap it, without that
        factory's look up its caller's frames for a ``gather`` or ``wait_for`` making it (the
        function's own task is neither's: on the way from a pass's start to its first step)."""
        traced = _Traced(coro, self, asyncio.current_task(self._loop))
        task = self._loop.create_task(traced, context=context)  # the hook leaves it as it is
        if isinstance(task, asyncio.Task):
            self.adopt(task, traced)
        return task

    def changed(self) -> None:
        """A task of the function yielded, started or ended: tell the pass (while it tracks
        them)."""
        self._changed()

    def adopt(self, task: asyncio.Task[Any], traced: _Traced) -> None:
        if task.done() or not self.open:
            return
        self.live[task] = traced
        task.add_done_callback(self._ended)
        self.changed()

    def _ended(self, task: asyncio.Task[Any]) -> None:
        self.live.pop(task, None)
        if not task.cancelled() and isinstance(getattr(task, "_exception", None), _SIGNALS):
            # the engine's signal (a step call the pass released as it ended): the engine's to
            # retrieve, as the function's own task's, not "never retrieved" noise at collection;
            # any other exception is left for the function (or asyncio's report) as it was
            task.exception()
        self.changed()

    def tracks(self, task: asyncio.Task[Any] | None) -> bool:
        """True if ``task`` is one of this pass's branches."""
        return task is not None and task in self.live

    def from_own_thread(self) -> bool:
        """True if a sync function's own thread made the current step call (from a task its
        ``SyncStep`` made in the thread's context), not a task of such a call (``parallel``)."""
        task = asyncio.current_task() if self._sync else None
        traced = None if task is None else self.live.get(task)
        return traced is not None and traced.parent is None

    def step_called(self, future: asyncio.Future[Any]) -> None:
        """A sync function's step call made ``future``: one of a thread the function started
        (not a tracked task) is remembered, for ``may_suspend``."""
        if not self.tracks(asyncio.current_task()):
            self._foreign = [f for f in self._foreign if not f.done()]
            self._foreign.append(future)

    def may_suspend(self) -> bool:
        """Whether the pass may suspend: every task of an async function waits for the engine
        (``settled``); a sync function's thread is blocked on a step call (or, while a step
        call of a thread it started is pending, is not seen working: the engine cannot see
        those threads)."""
        if not self._sync:
            return self.settled()
        if not self.quiet():
            return False
        return self.at_step() or any(not f.done() for f in self._foreign)

    @staticmethod
    def _ready(task: asyncio.Task[Any], traced: _Traced) -> bool:
        if task.done():
            return False
        waiting = traced.waiting
        if waiting is _NEW or waiting is None:
            return True
        done = getattr(waiting, "done", None)  # a future, asyncio's or one that quacks like it
        return done is not None and bool(done())

    def quiet(self) -> bool:
        """True if no task of the function is ready to run: each is done or awaits a future
        not done yet (a step call, another task, I/O, a timer)."""
        return not any(self._ready(task, traced) for task, traced in self.live.items())

    def at_step(self) -> bool:
        """True if some task of the function awaits a step call not resolved yet."""
        return any(
            not task.done() and self._is_step(traced.waiting) for task, traced in self.live.items()
        )

    def settled(self) -> bool:
        """True if every task of the function waits for the engine: it is done, blocked on a
        step call, awaiting another task of the function that is, or joining its own tasks
        (``_Traced.joining``) while every task it created that is still running is. A task
        awaiting anything else (I/O, a timer, an event no task of its own will set) is still
        working: the function has not settled."""
        return not self.working()

    def working(self) -> list[str]:
        """The tasks of the function still working (``settled``), described (name and
        coroutine)."""
        children: dict[asyncio.Task[Any], list[asyncio.Task[Any]]] = {}
        for task, traced in self.live.items():
            if traced.parent is not None and traced.parent in self.live:
                children.setdefault(traced.parent, []).append(task)
        known: dict[asyncio.Task[Any], bool] = {}

        def blocked(task: asyncio.Task[Any]) -> bool:
            if task.done():
                return True
            if task in known:
                return known[task]
            traced = self.live.get(task)
            if traced is None:  # not the function's: its own business, not the engine's
                return False
            known[task] = True  # tasks awaiting each other in a cycle wait for the engine too
            waiting = traced.waiting
            if self._ready(task, traced):
                result = False
            elif self._is_step(waiting):
                result = True
            elif isinstance(waiting, asyncio.Task):
                result = blocked(waiting)
            elif traced.joining() or any(_shields(kid, waiting) for kid in children.get(task, ())):
                # gather, TaskGroup, asyncio.wait, shield of its own task or gather: a join
                kids = children.get(task)
                result = kids is not None and all(blocked(kid) for kid in kids)
            else:  # I/O, a timer, an event: working (it may call a step yet)
                result = False
            known[task] = result
            return result

        live = list(self.live.items())
        return [traced.describe(task) for task, traced in live if not blocked(task)]

    def stop(self) -> None:
        """Stop tracking. A task of the function still running that a ``gather`` (of a
        coroutine it was given) or a ``TaskGroup`` made, and whose joining task has ended (the
        function's, which the pass's signal ended), is cancelled: nobody can join it any more,
        and left running it would outlive every suspension, with another one at each replay
        (``gather`` does not cancel a child's siblings when it raises). Unless it awaits a task
        that stays alive after the pass (``_doomed``). The others are released, never
        cancelled: a task the function created and did not join (a library's background task
        its first use started in the function must outlive the pass), or created and passed to
        ``gather``. A step they call later is refused by the ended pass. Later tasks are not
        tracked, and the released ones no longer reach the pass."""
        if not self.open:
            return
        self.open = False
        if self._hooked:
            _release(self._loop)
        for task in self._doomed():
            task.cancel()
        for traced in self.live.values():  # its parent, the function's task, keeps the pass
            traced.parent = None
        self.live.clear()
        self._foreign.clear()
        self._changed, self._is_step = _nothing, _never  # drop the pass: released tasks live on

    def _doomed(self) -> list[asyncio.Task[Any]]:
        """The orphaned tasks (``_orphaned``) that can be cancelled without cancelling anything
        that outlives the pass. Cancelling a task cancels the future it awaits: a task awaiting
        another task (directly, or through a ``gather`` of tasks it was given or a
        ``wait_for``) that is not cancelled too is released instead (that task may be
        shared: a token refresh a library caches and every caller awaits)."""
        doomed = {task for task, traced in self.live.items() if _orphaned(task, traced)}
        while True:
            spared = {task for task in doomed if not self._only_doomed(task, doomed, set())}
            if not spared:
                return list(doomed)
            doomed -= spared

    def _only_doomed(
        self, task: asyncio.Task[Any], doomed: set[asyncio.Task[Any]], seen: set[object]
    ) -> bool:
        """True if cancelling ``task`` cancels no task but those in ``doomed`` (or done), and
        tasks a ``gather`` or ``wait_for`` it awaits made of coroutines, which nothing else
        holds (``private``). Cancelling a task cancels the future it awaits, or, in a
        ``wait_for`` (3.11), the future wait_for was given."""
        traced = self.live.get(task)
        timed = traced.timed() if traced is not None else None
        return self._cancels_only_doomed(
            timed if timed is not None else getattr(task, "_fut_waiter", None), doomed, seen
        )

    def _cancels_only_doomed(
        self, future: object, doomed: set[asyncio.Task[Any]], seen: set[object]
    ) -> bool:
        """``_only_doomed`` for what cancelling ``future`` cancels."""
        if future is None or future in seen:
            return True
        seen.add(future)
        if isinstance(future, asyncio.Task):
            if future.done() or future in doomed:
                return True
            traced = self.live.get(future)
            return traced is not None and traced.private and self._only_doomed(future, doomed, seen)
        if _GATHERING is None or not isinstance(future, _GATHERING):
            return True  # a future of its own: a timer, I/O, an event
        return all(  # a gathered future not a task: the function's, maybe held elsewhere
            child.done()
            or (isinstance(child, asyncio.Task) and self._cancels_only_doomed(child, doomed, seen))
            for child in getattr(future, "_children", None) or ()
        )


__all__ = ["Branches"]
