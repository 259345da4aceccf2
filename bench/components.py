"""What each part of a benchmark run costs, read from the kernel and from the servers' own counters, so that a
regression names its component: CPU seconds and peak RSS of process trees (/proc), the busy share of every CPU
(/proc/stat), Redis commands by name (INFO commandstats), and the bytes an agent's WebSocket receives (ss).

A component is a list of root pids; its processes are each root and everything below it, looked up at every
reading, so that PostgreSQL's backends and Samba's workers that come and go during a window still count.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import time
from collections import Counter, defaultdict
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")
SOCKET_BYTES = re.compile(r"\bbytes_received:(\d+)")
SOCKET_PID = re.compile(r"pid=(\d+)")


def cpu_list(text: str) -> set[int]:
    """A CPU list as taskset and /proc write it ("0", "1-3,6") as a set of CPU numbers."""
    cpus: set[int] = set()
    for part in filter(None, text.split(",")):
        low, _, high = part.partition("-")
        cpus.update(range(int(low), int(high or low) + 1))
    return cpus


def process_table() -> dict[int, tuple[int, int]]:
    """pid → (parent pid, CPU ticks of the process and of its reaped children: utime+stime+cutime+cstime).
    Summed over a live tree this counts every process that ever ran in it, including the exited ones that a
    process of the tree has waited for (a PostgreSQL backend that closed during the window)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                table[int(entry.name)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    return table


def tree(roots: list[int], table: dict[int, tuple[int, int]]) -> list[int]:
    """The live processes of roots and below them."""
    children = defaultdict(list)
    for pid, (parent, _) in table.items():
        children[parent].append(pid)
    found, frontier = [], [pid for pid in roots if pid in table]
    while frontier:
        found += frontier
        frontier = [child for pid in frontier for child in children[pid]]
    return found


def group_cpu_seconds(groups: dict[str, list[int]]) -> dict[str, float]:
    table = process_table()
    return {name: sum(table[pid][1] for pid in tree(roots, table)) / CLK_TCK for name, roots in groups.items()}


def cpu_times() -> dict[str, tuple[int, int]]:
    """Per CPU and for the whole machine ("cpu"): (busy, total) ticks so far."""
    times = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu"):
            name, *values = line.split()
            numbers = [int(v) for v in values]
            idle = numbers[3] + numbers[4]  # idle + iowait
            times[name] = (sum(numbers) - idle, sum(numbers))
    return times


def redis_command_calls(client) -> Counter[str]:
    """Calls per command since the server started, INFO's own excluded (we send it to read these)."""
    stats = client.info("commandstats")
    return Counter({name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()
                    if name != "cmdstat_info"})


class Window:
    """CPU per component, per CPU busy share and Redis commands over one timed window:
    ``with Window(groups, redis_url) as window: ...`` then ``window.used``, ``window.busy``,
    ``window.redis_commands``. Both readings of Redis go over one connection, opened before the first, so the
    window counts none of its own connection's set-up."""

    def __init__(self, groups: dict[str, list[int]], redis_url: str = ""):
        self.groups = groups
        self.redis_url = redis_url

    def __enter__(self) -> Window:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> Window:
        import redis

        self.redis = redis.Redis.from_url(self.redis_url, socket_timeout=5) if self.redis_url else None
        self.redis_before = redis_command_calls(self.redis) if self.redis else Counter()
        self.before = group_cpu_seconds(self.groups)
        self.times_before = cpu_times()
        self.self_before = time.process_time()
        self.started = time.monotonic()
        return self

    def stop(self) -> None:
        self.wall = time.monotonic() - self.started
        after = group_cpu_seconds(self.groups)
        self.used = {name: after[name] - self.before[name] for name in self.groups}
        self.used["loadgen"] = time.process_time() - self.self_before
        times = cpu_times()
        self.used["machine"] = (times["cpu"][0] - self.times_before["cpu"][0]) / CLK_TCK
        self.busy = {name: (busy - self.times_before[name][0]) / max(1, total - self.times_before[name][1])
                     for name, (busy, total) in times.items() if name in self.times_before}
        self.redis_commands = None
        if self.redis is not None:
            with self.redis:
                self.redis_commands = redis_command_calls(self.redis) - self.redis_before


def busy_fields(window: Window) -> dict:
    """A window's busy shares as a result row keeps them: the machine's, and each CPU's."""
    return {"machine_busy_fraction": round(window.busy["cpu"], 3),
            "cpu_busy_fraction": {k: round(v, 3) for k, v in window.busy.items() if k != "cpu"}}


def peak_rss(groups: dict[str, list[int]]) -> dict[str, dict[str, int]]:
    """VmHWM (the peak resident set) of every live process of each group, in KiB: the processes, their sum and
    the largest. A tree's sum counts shared pages (PostgreSQL's shared buffers) once per process that touched
    them, so it is an upper bound; the largest is a lower one."""
    table = process_table()
    peaks = {}
    for name, roots in groups.items():
        values = [kib for pid in tree(roots, table) if (kib := _status_field(pid, "VmHWM")) is not None]
        peaks[name] = {"processes": len(values), "sum_kib": sum(values), "max_kib": max(values, default=0)}
    own = _status_field(os.getpid(), "VmHWM") or 0
    peaks["loadgen"] = {"processes": 1, "sum_kib": own, "max_kib": own}
    return peaks


def _status_field(pid: int, field: str) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return None


def affinity(groups: dict[str, list[int]]) -> dict[str, list[str]]:
    """The distinct CPU lists (Cpus_allowed_list) of every thread of each group's processes: the proof that a
    pinned run ran where it says."""
    table = process_table()
    found = {}
    for name, roots in groups.items():
        lists = set()
        for pid in tree(roots, table):
            with contextlib.suppress(OSError):
                for task in Path(f"/proc/{pid}/task").iterdir():
                    with contextlib.suppress(OSError):
                        for line in (task / "status").read_text().splitlines():
                            if line.startswith("Cpus_allowed_list:"):
                                lists.add(line.split()[1])
        found[name] = sorted(lists)
    return found


def socket_bytes_received(pids: set[int], peer_ports: set[int]) -> int:
    """Bytes received so far on the established TCP connections of ``pids`` to ``peer_ports`` (the agents'
    WebSockets to the portal's nodes), from the kernel's tcp_info as `ss -i` shows it."""
    listing = subprocess.run(["ss", "-tinpH", "state", "established"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    total, counting = 0, False
    for line in listing.splitlines():
        if not line[:1].isspace():  # a connection: "Recv-Q Send-Q local peer users:((...,pid=N,...))"
            columns = line.split()
            peer_port = int(columns[3].rsplit(":", 1)[1]) if len(columns) > 3 else -1
            owners = {int(pid) for pid in SOCKET_PID.findall(line)}
            counting = peer_port in peer_ports and bool(owners & pids)
        elif counting and (match := SOCKET_BYTES.search(line)):
            total += int(match.group(1))
    return total
