"""Shared helpers for the Python bench scripts (asyncio, uvloop, Trio, AnyIO).

Every script prints exactly one line:
    workload impl N seconds ops_per_sec peak_rss_kb [extra=k=v[,k=v]]
"""
import gc
import re
import sys
import time

now = time.perf_counter  # monotonic wall clock, seconds


def status_kb(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s+(\d+)", f.read()).group(1))


def settled_rss_kb():
    gc.collect()
    return status_kb("VmRSS")


def arg(i, default):
    return int(float(sys.argv[i])) if len(sys.argv) > i else default


def delays_ms(n):
    """W4 delays in whole ms, 0..100: minstd (Park-Miller), seed 42."""
    x, out = 42, []
    for _ in range(n):
        x = x * 48271 % 2147483647
        out.append(x % 101)
    return out, max(out)


def report(workload, impl, n, seconds, extra=None):
    line = "%s %s %d %.6f %.1f %d" % (workload, impl, n, seconds, n / seconds,
                                     status_kb("VmHWM"))
    if extra:
        line += " extra=" + extra
    print(line, flush=True)


def asyncio_flavour():
    """asyncio scripts take an optional 'uvloop' argument after N."""
    if "uvloop" in sys.argv[2:]:
        import uvloop
        uvloop.install()
        return "uvloop"
    return "asyncio"
