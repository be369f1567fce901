"""defer, defer_many and defer_every check their arguments at the call site, and
say what to do when used outside the block, on a shared store object, or with a lambda."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from duetime import Scheduler, SchedulerClosed
from duetime.durable import SQLiteStore, TaskRegistry
from duetime.testing import MemoryStore

pytestmark = pytest.mark.anyio

tasks = TaskRegistry()


@tasks.task("add")
async def add(a: int, b: int) -> None: ...


@tasks.task("greet")
def greet(name: str, greeting: str = "hello") -> None: ...


@tasks.task("many")
async def many(first: int, *rest: int) -> None: ...


@tasks.task("kwonly")
async def kwonly(a: int, *, b: int) -> None: ...


def _scale(factor: int, x: int) -> None: ...


tasks.task("scale")(functools.partial(_scale, 3))


class Callable_:
    def __call__(self, x: int) -> None: ...


tasks.task("instance")(Callable_())


@pytest.mark.parametrize(
    ("task", "args"),
    [
        ("add", ()),
        ("add", (1,)),
        ("add", (1, 2, 3)),
        ("greet", ()),
        ("greet", ("a", "b", "c")),
        ("many", ()),
        ("kwonly", (1,)),
        ("scale", ()),
        ("scale", (1, 2)),
        ("instance", ()),
    ],
)
async def test_defer_refuses_arguments_the_task_cannot_take(
    task: str, args: tuple[Any, ...]
) -> None:
    store = MemoryStore()
    async with Scheduler(store=store, tasks=tasks, worker=False) as s:
        with pytest.raises(TypeError, match=rf"task '{task}' cannot take {len(args)} positional"):
            await s.defer(task, *args)
        with pytest.raises(TypeError, match=rf"task '{task}'"):
            await s.defer_many(task, [(), (1, 2)] if task != "add" else [(1, 2), args])
        with pytest.raises(TypeError, match=rf"task '{task}'"):
            await s.defer_every(60, task, *args, key="series")
        # Nothing was stored, not even the good row of the batch.
        assert await s.deferred_entries() == []


async def test_defer_accepts_every_arity_the_task_takes() -> None:
    async with Scheduler(store=MemoryStore(), tasks=tasks, worker=False) as s:
        await s.defer(add, 1, 2)
        await s.defer(greet, "a")
        await s.defer(greet, "a", "hi")
        await s.defer(many, 1)
        await s.defer(many, 1, 2, 3, 4)
        await s.defer("scale", 5)
        await s.defer("instance", 5)
        await s.defer_many(add, [(1, 2), [3, 4]])
        await s.defer_every(60, greet, "a", key="series")
        assert len(await s.deferred_entries()) == 10


def test_the_message_names_the_missing_parameter_and_the_signature() -> None:
    with pytest.raises(TypeError) as info:
        tasks.check_args(tasks["kwonly"], (1,))
    message = str(info.value)
    assert "missing a required argument: 'b'" in message
    assert "(a, *, b)" in message
    assert "positional arguments only" in message


def test_a_callable_without_a_signature_is_not_checked() -> None:
    registry = TaskRegistry()
    registry.task("len")(len)  # a builtin: inspect finds a signature or none; both must work
    registry.task("print")(print)
    registry.check_args(registry["print"], (1, 2, 3))


async def test_defer_outside_the_block_says_to_use_async_with() -> None:
    s = Scheduler(store=MemoryStore(), tasks=tasks, worker=False)
    with pytest.raises(
        SchedulerClosed, match=r"async with Scheduler\(store=\.\.\., tasks=\.\.\.\)"
    ):
        await s.defer(add, 1, 2)
    with pytest.raises(SchedulerClosed, match="async with Scheduler"):
        await s.defer_many(add, [(1, 2)])
    with pytest.raises(SchedulerClosed, match="async with Scheduler"):
        await s.defer_every(60, add, 1, 2, key="k")
    async with s:
        pass
    with pytest.raises(SchedulerClosed, match="block has ended"):
        await s.defer(add, 1, 2)


async def test_a_second_scheduler_on_one_store_object_says_to_make_a_second_store(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    async with Scheduler(store=store, tasks=tasks, worker=False):
        with pytest.raises(RuntimeError, match="make a second one on the same file"):
            async with Scheduler(store=store, tasks=tasks, worker=False):
                pass
        # A second store object on the same file is the way.
        async with Scheduler(store=SQLiteStore(tmp_path / "jobs.db"), tasks=tasks, worker=False):
            pass


async def test_deferring_a_lambda_says_to_register_a_named_function() -> None:
    async with Scheduler(store=MemoryStore(), tasks=tasks, worker=False) as s:
        with pytest.raises(TypeError, match=r"a lambda cannot be decorated.*named function"):
            await s.defer(lambda: None)

        def unregistered() -> None: ...

        with pytest.raises(TypeError, match=r"decorate it with @tasks.task\(name\)"):
            await s.defer(unregistered)
