"""How many intra-op threads torch uses: the CPUs that other processes leave free (BENCHMARKS.md, "Thread policy").

torch starts one OpenMP thread per CPU. When other processes hold some of those CPUs, each parallel
region waits at its barrier for the thread that the scheduler has parked, thousands of times per
training step: beside one busy-looping process on 2 cores, a quickstart stage ran 3-30× slower at 2
threads than at 1. So every command starts by measuring how busy the machine is (two reads of
/proc/stat 0.2 s apart, while this process sleeps) and runs on the CPUs left free:

    threads = max(1, round((CPUs this process may use − CPUs busy with other processes) / processes))

`processes` is the number of our own processes sharing the CPUs: sweep workers (`--workers K`) and
the DDP ranks started by torchrun (LOCAL_WORLD_SIZE); Lightning sets its own per-rank count for the
ranks it launches itself (cpu_count // ranks, when OMP_NUM_THREADS is unset). The choice is printed as
one line (only when chosen automatically). `SATDIFFMOE_THREADS=N` (or `satdiffmoe --threads N`) fixes N; `SATDIFFMOE_THREADS=auto` is
the default; a user's OMP_NUM_THREADS is respected as a fixed N.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass

ENV = "SATDIFFMOE_THREADS"
WINDOW_S = 0.2  # long enough to see a busy process, short enough to be unnoticed at start-up


@dataclass(frozen=True)
class ThreadChoice:
    threads: int
    cpus: int  # CPUs this process may run on (its affinity mask)
    busy: float | None  # CPUs busy with other processes over the window; None: fixed by the user
    source: str  # "auto", or the variable that fixed it

    def line(self) -> str:
        if self.busy is None:
            return f"threads: {self.threads} of {self.cpus} CPUs ({self.source}={self.threads})"
        return (f"threads: {self.threads} of {self.cpus} CPUs ({self.busy:.1f} busy with other processes; "
                f"{ENV}=N to fix)")


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies over all CPUs from /proc/stat; None where there is none (not Linux).
    Steal time counts as neither busy nor idle: fewer threads would not get it back."""
    try:
        with open("/proc/stat") as stat:
            fields = [float(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0.0] * 8)[:8]
    busy = user + nice + system + irq + softirq  # niced processes too: they still preempt our threads
    return busy, busy + idle + iowait


def busy_cpus(window_s: float = WINDOW_S) -> float | None:
    """CPUs' worth of work other processes did over `window_s` (this process sleeps meanwhile)."""
    first = _cpu_times()
    if first is None:
        return None
    time.sleep(window_s)
    second = _cpu_times()
    total = second[1] - first[1]
    if total <= 0:
        return None
    return (second[0] - first[0]) / total * (os.cpu_count() or 1)


def choose(cpus: int, busy: float | None, processes: int = 1) -> int:
    """Threads per process for `processes` of ours on `cpus` CPUs of which `busy` are taken."""
    free = cpus if busy is None else cpus - min(max(busy, 0.0), cpus)
    return max(1, math.floor(free / max(1, processes) + 0.5))


def fixed_setting() -> tuple[int, str] | None:
    """(N, variable) when the user fixed the thread count, else None. A bad value is an error."""
    from .errors import UserError

    for name in (ENV, "OMP_NUM_THREADS"):
        value = os.environ.get(name, "").strip()
        if not value or (name == ENV and value == "auto"):
            continue
        if not value.isdigit() or int(value) < 1:
            raise UserError(f"{name}={value!r} is not a thread count; use a whole number >= 1"
                            + (" or auto" if name == ENV else ""))
        return int(value), name
    return None


_chosen: ThreadChoice | None = None  # this process's last choice (what `per_worker` divides)


def per_worker(workers: int) -> int:
    """Threads for each of `workers` processes this one starts (sweep workers): the free CPUs divided."""
    choice = _chosen or apply(quiet=True)
    if choice.busy is None and choice.source != "auto":  # fixed by the user: N per process
        return choice.threads
    return choose(choice.cpus, choice.busy, workers)


def apply(processes: int | None = None, quiet: bool = False) -> ThreadChoice:
    """Choose and set torch's intra-op threads for this process; print the one line unless `quiet`."""
    global _chosen
    import torch

    if processes is None:
        processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    cpus = usable_cpus()
    fixed = fixed_setting()
    if fixed is not None:
        choice = ThreadChoice(fixed[0], cpus, None, fixed[1])
    else:
        busy = busy_cpus()
        choice = ThreadChoice(choose(cpus, busy, processes), cpus, busy, "auto")
    torch.set_num_threads(choice.threads)
    _chosen = choice
    if not quiet and fixed is None:  # a count the user fixed needs no announcement
        print(choice.line(), file=sys.stderr, flush=True)
    return choice
