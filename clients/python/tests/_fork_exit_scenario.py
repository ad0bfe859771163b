"""Run by test_fork.py in a fresh interpreter: forked children that use the
clients and then exit normally (interpreter finalization, atexit, GC, as a
gunicorn worker does) must not disturb the parent's connection or cached
subscription. Prints the parent's answers; logs stream breaks to stderr.

Usage: python3 _fork_exit_scenario.py ADDR CHANNEL
"""

from __future__ import annotations

import logging
import os
import sys
import time

from occupancy_client import Client

logging.basicConfig(level=logging.DEBUG, format="%(process)d %(name)s %(message)s")
logging.getLogger("grpc").setLevel(logging.WARNING)

addr, channel = sys.argv[1], sys.argv[2]
cached = Client(addr, cached=True, fail_open=False)
plain = Client(addr, fail_open=False)
print("parent", cached.wait_synced(10), plain.is_occupied(channel), flush=True)
for i in range(3):
    pid = os.fork()
    if pid == 0:
        print(f"child{i}", cached.wait_synced(10), plain.is_occupied(channel), flush=True)
        sys.exit(0)
    os.waitpid(pid, 0)
time.sleep(1)
print("parent-after", cached.is_occupied(channel), plain.is_occupied(channel), flush=True)
print(f"parent-pid {os.getpid()}", flush=True)
