"""What the machine gave a benchmark row: how many cores two busy processes got at once
just before it, and how the CPUs' time went during it.

Why: this VM's speed is not a constant. In session 47 a `shoal dev` under 32 clients
ran for minutes at about one core of CPU time (92% where it had taken 170%), the
standalone node beside it lost a third of its searches a second, and one-client rows
got faster; minutes later the same processes had two cores again (docs/benchmarks.md,
"Session 47"). A row measured in such a stretch says more about the host than about
Shoal, so each row now carries the host's figures beside its own, and a verdict can be
read against them instead of against the clock.

- `parallel_cores`: two processes spin for a fixed time, at once, after one spun
  alone; their summed rate over the lone rate is the cores the two got (2.0 on an idle
  two-vCPU machine, about 1.0 when the vCPUs share one core). It measures rates, so a
  host that slows every core alike reads as 2.0: `single_rate` keeps that figure.
- `cpu_times` / `cpu_shares`: /proc/stat's per-CPU busy, idle and steal time over a
  window; steal is what the hypervisor reports it kept, idle what the guest left unused.
"""

import multiprocessing as mp
import time

# Spinning loops per rate check: short enough that the deadline overshoots by microseconds.
_CHUNK = 2000


def _spin(seconds, start, out):
    start.wait()
    n = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(_CHUNK):
            pass
        n += 1
        now = time.perf_counter()
        if now >= end:
            break
    out.put(n * _CHUNK / (now - t0))


def _rates(workers, seconds):
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_spin, args=(seconds, start, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    start.set()
    rates = [out.get(timeout=seconds + 30) for _ in procs]
    for p in procs:
        p.join()
    return rates


def parallel_cores(workers=2, seconds=0.2):
    """(cores the `workers` spinning processes got at once, one process's lone rate in
    loop iterations per second). The lone rate is the faster of one spin before and one
    after the shared one: a lone spin that something else slowed would otherwise read
    as more cores than the machine has (2.8 on two vCPUs, seen once in session 47)."""
    (before,) = _rates(1, seconds)
    together = sum(_rates(workers, seconds))
    (after,) = _rates(1, seconds)
    alone = max(before, after)
    return together / alone, alone


def cpu_times(path="/proc/stat"):
    """Per CPU: (busy, idle, steal) in clock ticks since boot. Busy is user, nice,
    system, irq and softirq; idle includes iowait."""
    out = []
    with open(path) as f:
        for line in f:
            name, *fields = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit()):
                continue
            v = [int(x) for x in fields] + [0] * (8 - len(fields))
            out.append((v[0] + v[1] + v[2] + v[5] + v[6], v[3] + v[4], v[7]))
    return out


def cpu_shares(before, after):
    """Busy, idle and steal over a window as % of all CPUs' time in it."""
    busy, idle, steal = (sum(b[i] - a[i] for a, b in zip(before, after)) for i in range(3))
    total = busy + idle + steal
    if total <= 0:
        return {"busy_pct": 0.0, "idle_pct": 0.0, "steal_pct": 0.0}
    return {"busy_pct": 100 * busy / total, "idle_pct": 100 * idle / total,
            "steal_pct": 100 * steal / total}
