"""The janitor's filesystem work, safe against the tenant who owns what is inside a pod's log
directory: list the candidates of a root, measure a tree, read and write the janitor's record,
delete a tree.

How it stays inside its own directory (docs/logs.md, "Safety"):
- Every path is resolved relative to an open directory descriptor, one component at a time,
  with O_NOFOLLOW | O_DIRECTORY: a symlink is never followed, not even one swapped in for a
  directory between two calls (the open fails and the tree is left for the next run). Entries
  are lstat'ed and unlinked relative to their parent's descriptor, so removing a symlink removes
  the link, never its target. The root itself must be its real path (no symlink anywhere in it).
- A directory on another device (a mount point) is neither read nor deleted, and neither is a
  candidate that has a mount point at or below it (/proc/self/mountinfo: bind mounts of the same
  filesystem share its device number).
- Only entries of the exact form `<ns>_<pod>_<uid>` directly under a root are ever opened; the
  root itself is never removed.
- A tree that changes while it is deleted (an entry's ctime newer than the moment it was
  measured; a directory not empty when it should be) is left, under its own name again, for the
  next run. ctime, not mtime: a tenant can set mtimes, not ctimes.
- Bounded: a wall-clock deadline checked at every entry, at most MAX_DEPTH levels (one open
  descriptor per level), no recursion; entry names are never printed (they may hold newlines).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import time
from collections.abc import Generator, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from enum import Enum

from webhook.janitor.plan import LATEST, PodDir, Record, parse_entry

OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
MAX_DEPTH = 64             # levels below a pod directory the janitor descends (one fd each)
RECORD = ".podmedic-janitor.json"  # the janitor's record in a pod directory (root-owned 0755)
RECORD_BYTES = 4096
MOUNTINFO = "/proc/self/mountinfo"


class Unsafe(RuntimeError):
    """The janitor cannot work safely here (platform, root); nothing is deleted."""


class Leave(Exception):
    """This tree is left as it is, for the next run; the message says why (never a tenant's name)."""


class Changed(Leave):
    """The tree changed while it was being deleted."""


def check_platform() -> None:
    """Refuse where deletion relative to directory descriptors is not available: there, any
    rmtree is open to symlink races (Python's own flag for exactly that)."""
    needed = (os.open, os.stat, os.unlink, os.rmdir, os.rename)
    if not shutil.rmtree.avoids_symlink_attacks or not all(f in os.supports_dir_fd for f in needed) \
            or os.scandir not in os.supports_fd:
        raise Unsafe("this platform has no symlink-attack-safe directory removal; the janitor refuses to run")


@dataclass(frozen=True)
class Root:
    path: str
    fd: int
    dev: int
    mounts: tuple[str, ...]  # mount points strictly below the root

    def close(self) -> None:
        os.close(self.fd)


def open_root(path: str) -> Root:
    """The root, opened; refused when any component of its path is a symlink."""
    real = os.path.realpath(path)
    if real != path:
        raise Unsafe(f"log root {path} is not its real path ({real}): configure the real path")
    try:
        fd = os.open(path, OPEN_DIR)
    except OSError as exc:
        raise Unsafe(f"cannot open log root {path}: {exc.strerror}") from None
    mounts = tuple(m for m in mount_points() if m.startswith(path.rstrip("/") + "/"))
    return Root(path, fd, os.fstat(fd).st_dev, mounts)


def mount_points(mountinfo: str = MOUNTINFO) -> list[str]:
    """Every mount point this process sees (field 5 of mountinfo, octal escapes decoded)."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as lines:
            fields = [line.split(" ") for line in lines]
    except OSError:
        return []
    return [_unescape(f[4]) for f in fields if len(f) > 4]


def _unescape(text: str) -> str:
    out, i = [], 0
    while i < len(text):
        if text[i] == "\\" and text[i + 1:i + 4].isdigit():
            out.append(chr(int(text[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class Candidate:
    dir: PodDir
    problem: str | None  # why it must not be touched (not a directory, a mount point)


def candidates(root: Root) -> list[Candidate]:
    """The entries of the form `<ns>_<pod>_<uid>` (or a begun deletion of one) directly under
    the root; anything else is not the janitor's business and is not even stat'ed."""
    found = []
    with os.scandir(root.fd) as entries:
        for entry in entries:
            pod_dir = parse_entry(root.path, entry.name)
            if pod_dir is None:
                continue
            try:
                st = os.stat(entry.name, dir_fd=root.fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            found.append(Candidate(pod_dir, _problem(root, entry.name, st)))
    return found


def _problem(root: Root, name: str, st: os.stat_result) -> str | None:
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory (a symlink or a file)"
    if st.st_dev != root.dev:
        return "a mount point"
    if _mounted(root.path, name, root.mounts):
        return "a mount point inside"
    return None


def _mounted(root_path: str, name: str, mounts: Iterable[str]) -> bool:
    """Whether a mount point is at or below the root's entry `name`."""
    path = f"{root_path.rstrip('/')}/{name}"
    return any(m == path or m.startswith(path + "/") for m in mounts)


# ------------------------------------------------------------------ the walk

class Kind(Enum):
    ENTER = "enter"  # a directory, before its entries (its stat: taken on the open descriptor)
    FILE = "file"    # anything but a directory (never followed)
    LEAVE = "leave"  # a directory, after its entries


Event = tuple[Kind, int, str, "os.stat_result | None"]  # kind, parent's fd, name, stat


def _open_dir(parent: int, name: str, dev: int, seen: os.stat_result | None) -> int:
    try:
        fd = os.open(name, OPEN_DIR, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.ENOENT):
            raise Changed("a directory was replaced or removed during the run") from None
        raise Leave(f"cannot open a directory: {exc.strerror}") from None
    st = os.fstat(fd)
    if st.st_dev != dev:
        os.close(fd)
        raise Leave("a mount point inside")
    if seen is not None and (st.st_ino, st.st_dev) != (seen.st_ino, seen.st_dev):
        os.close(fd)
        raise Changed("a directory was replaced during the run")
    return fd


def walk(parent: int, name: str, dev: int, deadline: float) -> Generator[Event, None, None]:
    """Depth-first over the tree `name` in `parent`, without recursion and without following
    anything: directories are yielded on ENTER and LEAVE, everything else once. Raises Leave
    when the tree cannot be walked safely or the deadline passes."""
    stack: list[tuple[int, str, Iterator[os.DirEntry[str]]]] = []
    try:
        fd = _open_dir(parent, name, dev, None)
        stack.append((fd, name, _entries(fd)))
        yield Kind.ENTER, parent, name, os.fstat(fd)
        while stack:
            if time.monotonic() > deadline:
                raise Leave("out of time for this run")
            fd, dirname, entries = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                _close(fd, entries)
                yield Kind.LEAVE, stack[-1][0] if stack else parent, dirname, None
                continue
            try:
                st = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                yield Kind.FILE, fd, entry.name, st
                continue
            if len(stack) >= MAX_DEPTH:
                raise Leave(f"deeper than {MAX_DEPTH} levels")
            child = _open_dir(fd, entry.name, dev, st)
            stack.append((child, entry.name, _entries(child)))
            yield Kind.ENTER, fd, entry.name, os.fstat(child)
    except OSError as exc:
        raise Leave(f"cannot read the tree: {exc.strerror}") from None
    finally:
        for fd, _, entries in stack:
            _close(fd, entries)


def _entries(fd: int) -> Iterator[os.DirEntry[str]]:
    """The directory's entries, read lazily (a directory of a million entries costs no memory)."""
    try:
        return iter(os.scandir(fd))
    except OSError:
        os.close(fd)
        raise


def _close(fd: int, entries: Iterator[os.DirEntry[str]]) -> None:
    close = getattr(entries, "close", None)
    if close is not None:
        close()
    os.close(fd)


@dataclass(frozen=True)
class Measure:
    last_change_ns: int | None
    size: int | None
    problem: str | None


def measure(root: Root, entry: str, deadline: float) -> Measure:
    """The tree's last change (its newest ctime) and its bytes, or why it cannot be measured."""
    newest = size = 0
    try:
        with closing(walk(root.fd, entry, root.dev, deadline)) as events:
            for kind, _, _, st in events:
                if st is not None:
                    newest = max(newest, st.st_ctime_ns)
                    size += st.st_size if kind is Kind.FILE else 0
    except Leave as why:
        return Measure(None, None, str(why))
    return Measure(newest, size, None)


def remove(root: Root, entry: str, since_ns: int, deadline: float) -> None:
    """Delete the tree `entry` of the root, bottom-up, relative to descriptors. Raises Changed
    when an entry changed after `since_ns` (the moment it was measured), Leave when it cannot go
    on safely; the root is never removed (only its entries are ever named)."""
    if parse_entry(root.path, entry) is None:
        raise Leave("not a pod log directory")
    # Read afresh, under the name being deleted: the walk's device check cannot see a bind mount
    # of the same filesystem, and one may have appeared since the root was opened.
    if _mounted(root.path, entry, mount_points()):
        raise Leave("a mount point inside")
    unlinked: set[tuple[int, int]] = set()  # hard links we removed bump their twins' ctime
    with closing(walk(root.fd, entry, root.dev, deadline)) as events:
        for kind, parent, name, st in events:
            if kind is Kind.LEAVE:
                _rmdir(parent, name)
                continue
            assert st is not None
            top = kind is Kind.ENTER and parent == root.fd  # its ctime is the rename's
            if st.st_ctime_ns > since_ns and not top and (st.st_dev, st.st_ino) not in unlinked:
                raise Changed("changed during deletion")
            if kind is Kind.FILE:
                _unlink(parent, name)
                if st.st_nlink > 1:
                    unlinked.add((st.st_dev, st.st_ino))


def _unlink(parent: int, name: str) -> None:
    try:
        os.unlink(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except IsADirectoryError:  # a file or link when walked, a directory now: the tenant's doing
        raise Changed("a file became a directory during deletion") from None


def _rmdir(parent: int, name: str) -> None:
    try:
        os.rmdir(name, dir_fd=parent)
    except FileNotFoundError:
        pass
    except OSError as exc:
        if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            raise Changed("a directory gained entries during deletion") from None
        raise Leave(f"cannot remove a directory: {exc.strerror}") from None


def begin_deletion(root: Root, pod_dir: PodDir) -> str:
    """Rename the candidate to its deleting name (atomic): a run cut short is resumed by the next
    one whatever the tree's times now say. Returns the name to delete."""
    name = pod_dir.deleting_name
    if name != pod_dir.entry:
        try:  # rename() would replace an empty directory there: never clobber an entry
            os.stat(name, dir_fd=root.fd, follow_symlinks=False)
        except FileNotFoundError:
            os.rename(pod_dir.entry, name, src_dir_fd=root.fd, dst_dir_fd=root.fd)
        else:
            raise Leave("its deleting name is taken (a begun deletion of the same pod)")
    return name


def restore_name(root: Root, pod_dir: PodDir, entry: str) -> None:
    """After a change: give the tree its own name back, so the next run measures it afresh. A
    tree that is gone meanwhile (its owner removed or moved it) has nothing to restore; one
    resumed under a short deleting name cannot get its name back and is resumed again."""
    original = pod_dir.name
    if original is not None and entry != original:
        try:
            os.stat(original, dir_fd=root.fd, follow_symlinks=False)
        except FileNotFoundError:
            try:
                os.rename(entry, original, src_dir_fd=root.fd, dst_dir_fd=root.fd)
            except FileNotFoundError:
                pass


# ------------------------------------------------------------------ the record

def read_record(root: Root, entry: str) -> Record | None:
    """The janitor's record in a pod directory, or None (absent, not a small regular file, or
    not what the janitor writes: one tenant's forged record must not stop the run for all)."""
    try:
        fd = _open_dir(root.fd, entry, root.dev, None)
    except Leave:
        return None
    try:
        file = os.open(RECORD, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        st = os.fstat(file)
        if not stat.S_ISREG(st.st_mode) or st.st_size > RECORD_BYTES:
            return None
        data = json.loads(os.read(file, RECORD_BYTES))
        keep = data.get("keepUntil")
        if keep is None:
            return Record(None, data.get("quarantined") is True)
        # A tenant can write this file: only a plain number a timestamp can hold is a pin.
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 <= keep <= LATEST:
            return None
        return Record(float(keep), data.get("quarantined") is True)
    except (OSError, ValueError, AttributeError, OverflowError, RecursionError, TypeError):
        return None  # a 4 KiB forged record can nest past the parser's recursion limit
    finally:
        os.close(file)


def write_record(root: Root, entry: str, record: Record) -> None:
    """Write the record atomically (a temporary file renamed over it, never following a link).
    A directory standing at either name (a tenant's, with the pvc backend) is Leave: the tenant's
    own record is at stake, not the run."""
    fd = _open_dir(root.fd, entry, root.dev, None)
    tmp = RECORD + ".tmp"
    try:
        _unlink(fd, tmp)
        file = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=fd)
        try:
            os.write(file, json.dumps({"keepUntil": record.keep_until, "quarantined": record.quarantined}).encode())
        finally:
            os.close(file)
        os.rename(tmp, RECORD, src_dir_fd=fd, dst_dir_fd=fd)
    except IsADirectoryError:
        raise Leave("a directory stands where the record goes") from None
    finally:
        os.close(fd)
