# chain.py: spends its time in hot(), called through level3() <- level2()
# <- level1() <- the script's loop, until it has used argv[1] seconds of CPU
# (CPU, not wall time: on a busy machine the samples still come). Run with
# -X perf (CPython 3.12+: each Python function is entered through a
# trampoline of its own in anonymous executable memory, named in
# /tmp/perf-PID.map).
import sys
import time


def hot(n):
    x = 0
    for i in range(n):
        x = (x * 31 + i) & 0xFFFFFFFF
    return x


def level3(n):
    return hot(n) + 1


def level2(n):
    return level3(n) * 3


def level1(n):
    return level2(n) + 7


budget = float(sys.argv[1] if len(sys.argv) > 1 else 3)
sink = 0
while time.process_time() < budget:
    sink += level1(20000)
print(sink)
