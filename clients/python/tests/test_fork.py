"""Fork safety: a client built and used before a fork works in every child
(os.fork, a multiprocessing 'fork' pool) and still in the parent.

Every client here raises instead of failing open, so a broken child cannot
hide behind a fail-open True.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

import occupancy_client.aio
from occupancy_client import Client

from _support import Env, eventually, unique_channel

HERE = Path(__file__).resolve().parent

# The client the multiprocessing pool's workers inherit (fork start method).
_inherited: Client | None = None
_pool_channel = ""


def _pool_check(_: int) -> tuple[int, bool]:
    assert _inherited is not None
    return os.getpid(), _inherited.is_occupied(_pool_channel)


def in_child(fn: Callable[[], object], timeout: float = 20.0) -> str:
    """Runs ``fn`` in an os.fork() child; returns ``ok <repr>`` or ``err <repr>``.

    A child that does not answer within ``timeout`` is killed and fails the
    test: a hang is the failure this file guards against.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        try:
            os.close(r)
            try:
                out = f"ok {fn()!r}"
            except BaseException as err:  # noqa: BLE001 - reported to the parent
                out = f"err {err!r}"
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], timeout)
        if not ready:
            os.kill(pid, 9)
            pytest.fail(f"forked child did not answer within {timeout}s (hung)")
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(r)
        os.waitpid(pid, 0)


def test_os_fork_children_and_the_parent_share_a_client(env: Env) -> None:
    channel = unique_channel("fork")
    env.occupy(channel)
    with Client(env.addr, fail_open=False) as client:
        assert client.is_occupied(channel) is True
        for _ in range(3):
            assert in_child(lambda: client.is_occupied(channel)) == "ok True"
        assert client.is_occupied(channel) is True
        # Children forked again from a child that used the client.
        assert in_child(lambda: in_child(lambda: client.is_occupied(channel))) == "ok 'ok True'"
        assert client.is_occupied(channel) is True


def test_multiprocessing_fork_pool_then_os_fork(env: Env) -> None:
    global _inherited, _pool_channel
    channel = unique_channel("pool")
    env.occupy(channel)
    with Client(env.addr, fail_open=False) as client:
        _inherited, _pool_channel = client, channel
        try:
            assert client.is_occupied(channel) is True
            for _ in range(2):
                with multiprocessing.get_context("fork").Pool(3) as pool:
                    answers = pool.map(_pool_check, range(9), chunksize=1)
                assert all(occupied for _, occupied in answers), answers
                assert {pid for pid, _ in answers} - {os.getpid()}, "ran in the children"
                assert client.is_occupied(channel) is True
                for _ in range(3):
                    assert in_child(lambda: client.is_occupied(channel)) == "ok True"
                assert client.is_occupied(channel) is True
        finally:
            _inherited = None


def test_cached_client_in_a_fork_pool(env: Env) -> None:
    # The parent's subscription thread is inside gRPC when the pool forks
    # (gRPC then logs "skipping fork() handlers"); every worker still starts a
    # subscription of its own, and the parent's carries on.
    global _inherited, _pool_channel
    channel = unique_channel("cpool")
    env.occupy(channel)
    with Client(env.addr, cached=True, fail_open=False) as client:
        _inherited, _pool_channel = client, channel
        try:
            assert client.wait_synced(10)
            with multiprocessing.get_context("fork").Pool(3) as pool:
                answers = pool.map(_pool_check, range(6), chunksize=1)
            assert all(occupied for _, occupied in answers), answers
            later = unique_channel("cpool")
            env.occupy(later)
            assert eventually(lambda: client.is_occupied(later), timeout=5)
            assert in_child(lambda: client.is_occupied(later)) == "ok True"
        finally:
            _inherited = None


def test_a_publish_from_a_child(env: Env) -> None:
    channel = unique_channel("fork")
    env.occupy(channel)
    with Client(env.addr) as client:
        assert client.is_occupied(channel) is True
        answer = in_child(
            lambda: client.publish_if_occupied([channel], "from-child", "{}").published
        )
        assert answer == f"ok ({channel!r},)"
    assert [c["body"]["name"] for c in env.calls_for(channel)] == ["from-child"]


def test_closed_in_the_parent_is_closed_in_the_child(env: Env) -> None:
    client = Client(env.addr)
    client.is_occupied(unique_channel())
    client.close()
    assert in_child(lambda: client.is_occupied(unique_channel())).startswith(
        "err ClientClosedError("
    )


def _scenario(env: Env, fork_support: str, *extra: str) -> list[str]:
    channel = unique_channel("forkenv")
    env.occupy(channel)
    child_env = dict(os.environ, GRPC_ENABLE_FORK_SUPPORT=fork_support)
    done = subprocess.run(
        [sys.executable, str(HERE / "_fork_scenario.py"), env.addr, channel, *extra],
        env=child_env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_works_with_grpc_fork_support_explicitly_enabled(env: Env) -> None:
    lines = _scenario(env, "true")
    assert len(lines) == 10, lines
    assert all(line.endswith(" ok True") for line in lines), lines


def test_fork_support_disabled_gives_a_clear_error_not_a_hang(env: Env) -> None:
    # With GRPC_ENABLE_FORK_SUPPORT=false, a gRPC call in a child of a process
    # that used gRPC hangs (deadline or not); the client refuses it instead.
    started = time.monotonic()
    lines = _scenario(env, "false")
    assert time.monotonic() - started < 60
    assert lines[0] == "parent ok True", lines
    children = [line for line in lines if line.startswith(("pool", "child"))]
    assert len(children) == 7, lines
    for line in children:
        assert " err FAILED_PRECONDITION " in line, line
        assert "GRPC_ENABLE_FORK_SUPPORT" in line, line
    assert "parent-after-pool ok True" in lines
    assert "parent-after-fork ok True" in lines


def test_children_exiting_normally_leave_the_parent_alone(env: Env) -> None:
    channel = unique_channel("exit")
    env.occupy(channel)
    done = subprocess.run(
        [sys.executable, str(HERE / "_fork_exit_scenario.py"), env.addr, channel],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:5] == [
        "parent True True",
        "child0 True True",
        "child1 True True",
        "child2 True True",
        "parent-after True True",
    ], lines
    parent = lines[5].split()[1]
    broken = [
        line
        for line in done.stderr.splitlines()
        if line.startswith(f"{parent} ") and "stream broke" in line
    ]
    assert broken == [], "a child's exit broke the parent's subscription"


def test_construction_touches_no_grpc_runtime(env: Env) -> None:
    # With fork support off, a child of a process that used gRPC cannot use it.
    # A client only constructed before the pool forks works in the workers, so
    # construction did not touch gRPC; once the parent calls, later children
    # get the clear error.
    lines = _scenario(env, "false", "--lazy")
    pool = [line for line in lines if line.startswith("pool")]
    assert len(pool) == 4 and all(line.endswith(" ok True") for line in pool), lines
    assert "parent-after-pool ok True" in lines
    children = [line for line in lines if line.startswith("child")]
    assert len(children) == 3 and all("FAILED_PRECONDITION" in line for line in children), lines


def test_asyncio_client_in_a_child_forked_between_event_loops(env: Env) -> None:
    channel = unique_channel("aiofork")
    env.occupy(channel)
    client = occupancy_client.aio.Client(env.addr, fail_open=False)

    async def check() -> bool:
        return await client.is_occupied(channel)

    assert asyncio.run(check()) is True
    for _ in range(2):
        assert in_child(lambda: asyncio.run(check())) == "ok True"
    assert asyncio.run(check()) is True
    asyncio.run(client.close())


def test_asyncio_cached_client_in_a_child_forked_between_event_loops(env: Env) -> None:
    before, after = unique_channel("aiocfork"), unique_channel("aiocfork")
    env.occupy(before)
    client = occupancy_client.aio.Client(env.addr, cached=True, fail_open=False)

    async def check(channel: str) -> bool:
        return await client.is_occupied(channel)

    async def child() -> bool:
        assert await client.is_occupied(before) is True
        env.occupy(after)
        deadline = time.monotonic() + 5
        while not await client.is_occupied(after):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    assert asyncio.run(check(before)) is True
    assert in_child(lambda: asyncio.run(child())) == "ok True"
    assert asyncio.run(check(after)) is True
    asyncio.run(client.close())


def test_asyncio_client_forked_inside_a_running_loop_gives_a_clear_error(env: Env) -> None:
    channel = unique_channel("aiofork")
    env.occupy(channel)

    async def scenario() -> str:
        async with occupancy_client.aio.Client(env.addr, fail_open=False) as client:
            assert await client.is_occupied(channel) is True

            def child() -> bool:
                loop = asyncio.new_event_loop()
                return loop.run_until_complete(client.is_occupied(channel))

            answer = in_child(child)
            assert await client.is_occupied(channel) is True
            return answer

    answer = asyncio.run(scenario())
    assert answer.startswith("err OccupancyError("), answer
    assert "FAILED_PRECONDITION" in answer and "forked while" in answer, answer


def test_cached_mode_restarts_its_subscription_in_a_child(env: Env) -> None:
    before, after = unique_channel("cfork"), unique_channel("cfork")
    env.occupy(before)
    with Client(env.addr, cached=True, fail_open=False) as client:
        assert client.wait_synced(10), "cached client never synchronised"
        assert client.is_occupied(before) is True

        def child() -> bool:
            # The parent's subscription thread did not survive the fork; the
            # child's own sees a webhook sent after the fork.
            assert client.is_occupied(before) is True
            env.occupy(after)
            return eventually(lambda: client.is_occupied(after), timeout=5)

        assert in_child(child) == "ok True"
        assert eventually(lambda: client.is_occupied(after), timeout=5)
