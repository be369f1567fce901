"""TaskRegistry, @tasks.task and current_entry()."""

from __future__ import annotations

import functools

import pytest

from duetime import Retry
from duetime.durable import TaskRegistry, current_entry


def test_task_registers_and_returns_the_function_unchanged() -> None:
    tasks = TaskRegistry()

    async def send(invoice: int) -> None: ...

    decorated = tasks.task("billing.send", retry=Retry(attempts=5), lease=30, timeout=9)(send)
    assert decorated is send
    t = tasks["billing.send"]
    assert tasks[send] is t
    assert (t.name, t.func, t.lease, t.timeout, t.max_deliveries, t.is_async) == (
        "billing.send",
        send,
        30.0,
        9.0,
        5,
        True,
    )
    assert t.retry == Retry(attempts=5)
    assert "billing.send" in tasks
    assert send in tasks
    assert "other" not in tasks
    assert [] not in tasks  # unhashable: just not a member
    assert list(tasks) == ["billing.send"]
    assert len(tasks) == 1
    assert "billing.send" in repr(tasks)


def test_sync_and_partial_functions() -> None:
    tasks = TaskRegistry()

    def sync(x: int) -> None: ...

    async def coro(x: int, y: int) -> None: ...

    tasks.task("s")(sync)
    part = functools.partial(coro, 1)
    tasks.task("p")(part)
    assert not tasks["s"].is_async
    assert tasks["p"].is_async


def test_the_same_name_or_function_twice_is_an_error() -> None:
    tasks = TaskRegistry()

    def f() -> None: ...

    def g() -> None: ...

    tasks.task("a")(f)
    with pytest.raises(ValueError, match="already registered"):
        tasks.task("a")(g)
    with pytest.raises(ValueError, match="already registered as task 'a'"):
        tasks.task("b")(f)


def test_lookup_errors() -> None:
    tasks = TaskRegistry()

    def f() -> None: ...

    with pytest.raises(LookupError, match="no task named 'x'"):
        tasks["x"]
    with pytest.raises(TypeError, match="not a registered task"):
        tasks[f]
    with pytest.raises(TypeError, match="registered function or its name"):
        tasks.resolve(42)  # type: ignore[call-overload]
    assert tasks.get("x") is None


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"retry": 3}, TypeError),
        ({"lease": 0}, ValueError),
        ({"lease": float("inf")}, ValueError),
        ({"lease": "30"}, TypeError),
        ({"timeout": -1}, ValueError),
        ({"max_deliveries": 0}, ValueError),
        ({"max_deliveries": 2.0}, TypeError),
        ({"max_deliveries": True}, TypeError),
    ],
)
def test_bad_options(kwargs: dict[str, object], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        TaskRegistry().task("t", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("name", "exc"), [(1, TypeError), ("", ValueError), ("a\nb", ValueError)])
def test_bad_names(name: object, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        TaskRegistry().task(name)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1 to 200"):
        TaskRegistry().task("x" * 201)


def test_decorating_a_non_callable() -> None:
    with pytest.raises(TypeError, match="callable"):
        TaskRegistry().task("t")(42)  # type: ignore[type-var]


def test_current_entry_outside_a_task() -> None:
    with pytest.raises(RuntimeError, match="inside a durable task"):
        current_entry()
