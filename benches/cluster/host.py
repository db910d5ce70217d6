"""What the machine gave a benchmark row: how many cores two busy processes got at once
just before it, and how the CPUs' time went during it.

Why: a row's figures depend on what else the machine runs, and the servers' own counters
cannot tell. In session 47 a profiler's report, left running beside a benchmark loop,
took one of the two vCPUs for about three minutes: the cluster's 32-client rows lost a
third of their rate and its one-client rows got faster, with nothing in INFO to say why
(docs/benchmarks.md, "Session 47"); the host can do the same to a run, and runs minutes
apart have differed by a third since session 24. So each row carries the host's figures
beside its own, and a verdict can be read against them instead of against the clock.

- `parallel_cores`: two processes spin over the same fixed window, between two lone
  spins; their summed rate over the faster lone rate is the cores the two got. Compare
  it with the same VM's idle reading (1.9-2.0 on the 2-vCPU VMs of docs/benchmarks.md;
  vCPUs that are hyperthreads of one core would read lower even when idle). It measures
  rates, so a host that slows every core alike still reads as two cores: the lone rate
  it returns keeps that figure.
- `cpu_times` / `cpu_shares`: /proc/stat's per-CPU busy, idle and steal time over a
  window. Steal is what the hypervisor reports it kept; idle is what the guest left
  unused (a scheduler that packs every thread onto one vCPU shows as half idle).
"""

import multiprocessing as mp
import queue
import time

# Loops per clock check: short enough that a window overshoots by microseconds.
_CHUNK = 2000
# How long a spinning process may take to start before the probe gives up on it.
_START_GRACE = 5.0


def _spin(begin, end, out):
    """Counts loops from `begin` to `end` (perf_counter is CLOCK_MONOTONIC, one clock
    for every process), so processes that started late still share one window: a
    process that could not get a core at first is counted short, not excused."""
    while time.perf_counter() < begin:
        pass
    n = 0
    while True:
        for _ in range(_CHUNK):
            pass
        n += 1
        if time.perf_counter() >= end:
            break
    out.put(n * _CHUNK / (end - begin))


def _rates(workers, seconds):
    """Each of `workers` forked processes' loop rate over one shared window."""
    ctx = mp.get_context("fork")
    out = ctx.Queue()
    begin = time.perf_counter() + 0.05
    end = begin + seconds
    procs = [ctx.Process(target=_spin, args=(begin, end, out), daemon=True)
             for _ in range(workers)]
    try:
        for p in procs:
            p.start()
        rates = []
        deadline = end + _START_GRACE
        while len(rates) < workers:
            try:
                rates.append(out.get(timeout=0.2))
            except queue.Empty:
                if any(p.exitcode not in (None, 0) for p in procs):
                    raise RuntimeError("a host probe process died") from None
                if time.perf_counter() > deadline:
                    raise TimeoutError("host probe processes did not report") from None
        return rates
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
            if p.pid is not None:
                p.join()


def parallel_cores(workers=2, seconds=0.15):
    """(cores the `workers` spinning processes got at once, one process's lone rate in
    loops per second). The lone rate is the faster of one spin before and one after the
    shared one: a lone spin that something else slowed would otherwise read as more
    cores than the machine has (2.8 on two vCPUs, seen once in session 47)."""
    (before,) = _rates(1, seconds)
    together = sum(_rates(workers, seconds))
    (after,) = _rates(1, seconds)
    alone = max(before, after)
    return together / alone, alone


def cpu_times(path="/proc/stat"):
    """Per CPU name: (busy, idle, steal) in clock ticks since boot. Busy is user, nice,
    system, irq and softirq (Linux already counts guest time inside user); idle
    includes iowait, time the CPU was free to run something else."""
    out = {}
    with open(path) as f:
        for line in f:
            name, *fields = line.split()
            if not (name.startswith("cpu") and name[3:].isdigit()):
                continue
            v = [int(x) for x in fields] + [0] * (8 - len(fields))
            out[name] = (v[0] + v[1] + v[2] + v[5] + v[6], v[3] + v[4], v[7])
    return out


def cpu_shares(before, after):
    """Busy, idle and steal over a window as % of the time of the CPUs present at both
    ends; None when no tick passed (an unmeasured window is not an idle machine)."""
    cpus = [name for name in after if name in before]
    busy, idle, steal = (sum(after[c][i] - before[c][i] for c in cpus) for i in range(3))
    total = busy + idle + steal
    if total <= 0:
        return None
    return {"busy_pct": 100 * busy / total, "idle_pct": 100 * idle / total,
            "steal_pct": 100 * steal / total}
