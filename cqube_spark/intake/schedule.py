"""Which source loads next: each as soon as the sources it references are loaded, the longest chain first.

A source may load once every source it references (its foreign keys' tables) has loaded. Loading by whole
generations (every master, then everything that references them) left a thread idle at the end of each
generation and started the biggest file late: on the upstream sample ×10, student attendance (105 s, the
longest load) started 23 s after the school master it needs, behind small files that nothing waits for.

Here a free thread takes the ready source with the longest *critical path*: its own estimated cost plus the
costliest chain of sources that wait for it. So the school master goes before a bigger file nothing waits for,
and the biggest file goes as soon as its masters are in. The cost estimate is rough on purpose: a fixed
cost per file (planning, commits; ~5-8 s for a small file on 2 cores) plus its bytes at the throughput of
the big attendance file (~1.6 MB/s on 2 cores); only the order depends on it, never what is loaded.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Executor, wait
from graphlib import TopologicalSorter
from typing import Callable

FILE_SECONDS = 6.0
BYTES_PER_SECOND = 2_000_000


def cost(sizes: list[int]) -> float:
    """Estimated seconds to load files of these byte sizes."""
    return sum(FILE_SECONDS + (size or 0) / BYTES_PER_SECOND for size in sizes)


def critical_paths(deps: dict[str, set[str]], costs: dict[str, float]) -> dict[str, float]:
    """Each source's cost plus the costliest chain of sources that reference it, directly or not."""
    waiting: dict[str, set[str]] = {n: set() for n in deps}
    for n, refs in deps.items():
        for r in refs & waiting.keys():
            waiting[r].add(n)
    memo: dict[str, float] = {}

    def path(n: str) -> float:
        if n not in memo:
            memo[n] = costs.get(n, 0.0) + max((path(m) for m in waiting[n]), default=0.0)
        return memo[n]
    return {n: path(n) for n in deps}


def run(pool: Executor, threads: int, deps: dict[str, set[str]], costs: dict[str, float],
        load: Callable[[str], object]) -> dict[str, object]:
    """``load(name)`` for every source in ``costs`` (the ones with work), each once the sources it references
    (``deps``; acyclic) are done, at most ``threads`` at a time, longest critical path first (ties by name).
    Returns ``{name: result}``. A failed load's exception is raised once it is seen; loads already running
    finish, no new one starts."""
    graph = TopologicalSorter({n: sorted(refs & deps.keys()) for n, refs in deps.items()})
    graph.prepare()
    prio = critical_paths(deps, costs)
    ready: list[str] = []
    running: dict = {}
    results: dict[str, object] = {}
    while graph.is_active():
        new = graph.get_ready()
        idle = [n for n in new if n not in costs]
        ready += [n for n in new if n in costs]
        if idle:                      # nothing to load: done at once, which may make others ready
            graph.done(*idle)
            continue
        ready.sort(key=lambda n: (-prio[n], n))
        while ready and len(running) < threads:
            name = ready.pop(0)
            running[pool.submit(load, name)] = name
        if not running:
            raise RuntimeError(f"no source can load; waiting: {sorted(ready)}")
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        for f in finished:
            name = running.pop(f)
            results[name] = f.result()
            graph.done(name)
    return results
