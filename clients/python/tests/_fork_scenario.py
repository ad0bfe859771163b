"""Run in a fresh interpreter by test_fork.py, so gRPC reads the environment
(GRPC_ENABLE_FORK_SUPPORT) the test sets: a client used in the parent, then a
multiprocessing 'fork' pool, then os.fork() children, then the parent again.

Usage: python3 _fork_scenario.py ADDR CHANNEL [--lazy]; with --lazy the parent
makes no call before the pool. Prints one line per call:
``<who> ok <answer>`` or ``<who> err <code> <details>``.
"""

from __future__ import annotations

import multiprocessing
import os
import sys

from occupancy_client import Client, OccupancyError

client = Client(sys.argv[1], fail_open=False)
channel = sys.argv[2]


def check(who: str) -> str:
    try:
        return f"{who} ok {client.is_occupied(channel)}"
    except OccupancyError as err:
        return f"{who} err {err.code.name} {err.details}"


def pool_check(i: int) -> str:
    return check(f"pool{i}")


def main() -> None:
    if "--lazy" not in sys.argv:
        print(check("parent"), flush=True)
    with multiprocessing.get_context("fork").Pool(2) as pool:
        for line in pool.map(pool_check, range(4), chunksize=1):
            print(line, flush=True)
    print(check("parent-after-pool"), flush=True)
    for i in range(3):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            os.write(w, check(f"child{i}").encode())
            os._exit(0)
        os.close(w)
        with os.fdopen(r) as pipe:
            print(pipe.read(), flush=True)
        os.waitpid(pid, 0)
    print(check("parent-after-fork"), flush=True)


if __name__ == "__main__":
    main()
