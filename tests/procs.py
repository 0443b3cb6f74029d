"""What processes hold, read from /proc: gunicorn workers, their memory, CPU time and sockets.

Shared by `make bench` (RSS, CPU per review, how connections landed on the workers) and the
tests that check connection balancing against a real server.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return sorted(found)


def rss_bytes(pids: Sequence[int]) -> int:
    """Total resident set size of these processes (VmRSS; shared pages count once per process,
    as a container's memory accounting roughly does)."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            continue
    return total


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU time these processes have used so far."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (stat fields 14 and 15)
    return total / os.sysconf("SC_CLK_TCK")


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    return inodes


def _established_inodes(port: int) -> set[str]:
    """Inodes of the server side of established TCP connections to `port`."""
    suffix, inodes = f":{port:04X}", set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[1].endswith(suffix) and fields[3] == "01":
                inodes.add(fields[9])
    return inodes


def connections_per_worker(master: int, port: int) -> list[int]:
    """How many established client connections to `port` each worker of gunicorn `master`
    holds right now, busiest first."""
    established = _established_inodes(port)
    return sorted((len(_socket_inodes(pid) & established) for pid in children(master)), reverse=True)
