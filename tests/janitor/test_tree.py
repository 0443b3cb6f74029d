"""The janitor's filesystem work against hostile trees, on real files: it neither deletes nor
reads anything outside the dead pod's own directory, never crosses a mount, survives races and
huge trees without crashing, and leaves what changed for the next run."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.janitor.hostile import DEAD, NEIGHBOUR, TENANT, UID, as_tenant, pod_dir, snapshot
from webhook.janitor import tree
from webhook.cli.config import load
from webhook.janitor.plan import DELETING, LATEST, Pod, Policy, Record, parse_entry

FAR = 3600.0  # a deadline nobody reaches


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


@pytest.fixture
def decoy(tmp_path: Path) -> Path:
    """Stands for /etc: a directory outside the root with files a bug would delete."""
    path = tmp_path / "etc"
    path.mkdir()
    (path / "passwd").write_text("root:x:0:0\n")
    (path / "sub").mkdir()
    (path / "sub" / "shadow").write_text("secret\n")
    return path


def opened(root: Path) -> tree.Root:
    return tree.open_root(str(root))


def delete(root: Path, name: str = DEAD, since_ns: int | None = None, budget: float = FAR) -> None:
    """Measure (unless `since_ns` is given) then delete `name` as a run does (rename first)."""
    r = opened(root)
    try:
        if since_ns is None:
            measured = tree.measure(r, name, time.monotonic() + budget)
            assert measured.problem is None, measured.problem
            since_ns = measured.last_change_ns or 0
        pod = parse_entry(str(root), name)
        assert pod is not None
        entry = tree.begin_deletion(r, pod)
        since = since_ns
        try:
            tree.remove(r, entry, since, time.monotonic() + budget)
        except tree.Changed:
            tree.restore_name(r, pod, entry)
            raise
    finally:
        r.close()


def test_a_plain_tree_is_deleted_and_nothing_else(root, decoy):
    pod_dir(root)
    pod_dir(root, NEIGHBOUR)
    (root / "README").write_text("not ours")
    before = snapshot(root / NEIGHBOUR)
    delete(root)
    assert sorted(os.listdir(root)) == ["README", NEIGHBOUR]
    assert snapshot(root / NEIGHBOUR) == before


def test_symlinks_inside_to_etc_and_to_another_namespace_are_removed_not_followed(root, decoy):
    base = pod_dir(root)
    neighbour = pod_dir(root, NEIGHBOUR)
    before = snapshot(decoy), snapshot(neighbour)
    app = base / "app"
    (app / "etc").symlink_to(decoy)                         # absolute, to a directory
    (app / "passwd").symlink_to(decoy / "passwd")           # absolute, to a file
    (app / "neighbour").symlink_to(f"../../{NEIGHBOUR}")    # relative, to a live pod's directory
    nested = app / "a" / "b"
    nested.mkdir(parents=True)
    (nested / "up").symlink_to("../../../..")               # to the root itself
    (nested / "etc").symlink_to(decoy)
    as_tenant(base)
    r = opened(root)
    try:
        measured = tree.measure(r, DEAD, time.monotonic() + FAR)
    finally:
        r.close()
    assert measured.problem is None and measured.size == len("line 0\n") * 3 + sum(
        len(os.readlink(p)) for p in (app / "etc", app / "passwd", app / "neighbour", nested / "up", nested / "etc"))
    delete(root)
    assert not (root / DEAD).exists()
    assert (snapshot(decoy), snapshot(neighbour)) == before


def test_a_candidate_that_is_itself_a_symlink_is_left_alone(root, decoy):
    neighbour = pod_dir(root, NEIGHBOUR)
    (root / DEAD).symlink_to(neighbour)
    (root / f"team_web-2_{UID[:-1]}0").symlink_to(decoy)
    before = snapshot(neighbour), snapshot(decoy)
    r = opened(root)
    try:
        problems = {c.dir.entry: c.problem for c in tree.candidates(r)}
        assert problems[DEAD] == problems[f"team_web-2_{UID[:-1]}0"] == "not a directory (a symlink or a file)"
        with pytest.raises(tree.Leave):
            tree.remove(r, DEAD, 0, time.monotonic() + FAR)
        assert tree.measure(r, DEAD, time.monotonic() + FAR).problem is not None
    finally:
        r.close()
    assert (root / DEAD).is_symlink() and (snapshot(neighbour), snapshot(decoy)) == before


def test_the_root_is_never_a_candidate_and_never_removed(root):
    r = opened(root)
    try:
        for name in (".", "..", "", "/"):
            with pytest.raises(tree.Leave):
                tree.remove(r, name, 0, time.monotonic() + FAR)
    finally:
        r.close()
    assert root.is_dir()


def test_a_root_that_is_a_symlink_or_under_one_is_refused(tmp_path, root):
    link = tmp_path / "link"
    link.symlink_to(root)
    for path in (link, link / "."):
        with pytest.raises(tree.Unsafe, match="not its real path"):
            tree.open_root(os.path.normpath(str(path)))
    (root / "inner").mkdir()
    with pytest.raises(tree.Unsafe, match="not its real path"):
        tree.open_root(str(link / "inner"))


def test_a_directory_swapped_for_a_symlink_between_stat_and_open_is_left(root, decoy, monkeypatch):
    """The race a tenant's process would try, made deterministic: the walk has just lstat'ed a
    directory when it is replaced by a symlink to /etc (here the decoy)."""
    base = pod_dir(root)
    (base / "app" / "sub").mkdir()
    (base / "app" / "sub" / "x.log").write_text("x")
    before = snapshot(decoy)
    real_open = tree._open_dir

    def swap_then_open(parent, name, dev, seen):
        if name == "sub":  # the tenant's move, between the walk's lstat and its open
            os.rename("sub", "sub.old", src_dir_fd=parent, dst_dir_fd=parent)
            os.symlink(decoy, "sub", dir_fd=parent)
        return real_open(parent, name, dev, seen)

    r = opened(root)
    measured = tree.measure(r, DEAD, time.monotonic() + FAR)
    r.close()
    monkeypatch.setattr(tree, "_open_dir", swap_then_open)
    with pytest.raises(tree.Changed):
        delete(root, since_ns=measured.last_change_ns)
    assert snapshot(decoy) == before
    assert (root / DEAD).is_dir() and not (root / (DELETING + DEAD)).exists()  # its name back, for the next run


def test_a_file_swapped_for_a_directory_before_its_unlink_is_a_change(root, monkeypatch):
    """The other side of the race: the walk found a file (or a link) and the tenant puts a
    directory under its name before the unlink, which then fails with EISDIR. That is the tree
    changing, as any other change during deletion (its name back, for the next run), not an error
    of the run (the racing test below hit it)."""
    pod_dir(root)
    real_unlink = os.unlink

    def swap_then_unlink(name, *, dir_fd=None):
        if name == "app.0.log":  # the tenant's move, between the walk and the unlink
            real_unlink(name, dir_fd=dir_fd)
            os.mkdir(name, dir_fd=dir_fd)
        return real_unlink(name, dir_fd=dir_fd)

    r = opened(root)
    measured = tree.measure(r, DEAD, time.monotonic() + FAR)
    r.close()
    monkeypatch.setattr(tree.os, "unlink", swap_then_unlink)
    with pytest.raises(tree.Changed, match="became a directory"):
        delete(root, since_ns=measured.last_change_ns)
    assert (root / DEAD).is_dir() and not (root / (DELETING + DEAD)).exists()  # its name back, for the next run


RACER = """
import os, sys
app, decoy = int(sys.argv[1]), sys.argv[2]  # its directory as an inherited descriptor
while True:
    for i in range(5):
        d = f"d{i}"
        try:
            os.mkdir(d, dir_fd=app)  # deleted by the janitor? there again, for its next open
        except OSError:
            pass
        try:
            os.rename(d, "tmp", src_dir_fd=app, dst_dir_fd=app)
            os.symlink(decoy, d, dir_fd=app)
            os.unlink(d, dir_fd=app)
            os.rename("tmp", d, src_dir_fd=app, dst_dir_fd=app)
        except OSError:
            pass
"""


def test_a_tenant_swapping_symlinks_in_a_loop_during_deletion_reaches_nothing(root, decoy):
    """The same race with a real concurrent process of the tenant (its own UID when the tests
    run as root): it keeps replacing directories of its tree with a symlink to /etc (the decoy)
    and back, and re-creating them, while the janitor deletes again and again. The exact
    lstat-to-open window is rarely hit by chance (the deterministic test above is the one that
    fails without O_NOFOLLOW); this one fails if the walk follows a symlink at any other step."""
    base = pod_dir(root, files=0)
    app = base / "app"
    for i in range(5):
        d = app / f"d{i}"
        d.mkdir()
        for j in range(200):
            (d / f"f{j}").write_text("x")
    as_tenant(base)
    before = snapshot(decoy)
    fd = os.open(app, os.O_RDONLY | os.O_DIRECTORY)
    system = os.path.exists("/usr/bin/python3")  # the tenant's UID may not read a virtualenv under /root
    racer = subprocess.Popen(["/usr/bin/python3" if system else sys.executable, "-c", RACER, str(fd), str(decoy)],
                             pass_fds=(fd,), user=TENANT if os.geteuid() == 0 and system else None)
    os.close(fd)
    try:
        time.sleep(0.2)
        assert racer.poll() is None, "the tenant's process must be racing"
        for _ in range(200):
            name = DEAD if (root / DEAD).exists() else DELETING + DEAD
            if not (root / name).exists():
                break
            try:
                delete(root, name, since_ns=time.time_ns() + 10**12)  # changes are the race's, not data
            except tree.Leave:
                pass
    finally:
        racer.kill()
        racer.wait()
    assert snapshot(decoy) == before


def test_names_with_newlines_and_odd_bytes_are_deleted(root):
    base = pod_dir(root)
    weird = base / "app" / "line\nbreak"
    weird.mkdir()
    (weird / "a\nb.log").write_text("x")
    (weird / "\x1b[31mred").write_text("x")
    (base / "app" / os.fsdecode(b"bad\xff")).write_text("x")
    (root / f"{DEAD}\n").mkdir()  # not a candidate: left alone
    as_tenant(base)
    delete(root)
    assert os.listdir(root) == [f"{DEAD}\n"]


def test_a_fifo_and_a_socket_in_the_tree_do_not_hang_it(root):
    base = pod_dir(root)
    os.mkfifo(base / "app" / "pipe")
    os.mkfifo(base / tree.RECORD)  # where the janitor's record lives
    r = opened(root)
    try:
        assert tree.read_record(r, DEAD) is None
    finally:
        r.close()
    delete(root)
    assert not (root / DEAD).exists()


@pytest.fixture
def shm_root(tmp_path: Path) -> Iterator[Path]:
    """A root on tmpfs where there is one: 100 000 files take a minute to create on a busy disk."""
    base = Path(tempfile.mkdtemp(dir="/dev/shm")) if os.path.isdir("/dev/shm") else tmp_path
    (base / "logs").mkdir()
    yield base / "logs"
    shutil.rmtree(base, ignore_errors=True)


def test_100000_small_files_either_finish_or_are_left_for_the_next_run(shm_root):
    root = shm_root
    base = pod_dir(root, files=0)
    for i in range(100):
        d = base / "app" / f"{i:03}"
        d.mkdir()
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        for j in range(1000):
            os.close(os.open(f"{j}.log", os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
        os.close(fd)
    r = opened(root)
    pod = parse_entry(str(root), DEAD)
    assert pod is not None
    try:
        measured = tree.measure(r, DEAD, time.monotonic() + FAR)
        entry = tree.begin_deletion(r, pod)
        with pytest.raises(tree.Leave, match="out of time"):
            tree.remove(r, entry, measured.last_change_ns, time.monotonic() + 0.2)
        assert (root / entry).is_dir()  # cut short, no crash, still under its deleting name
        resumed = parse_entry(str(root), entry)
        assert resumed is not None and resumed.deleting
        tree.remove(r, entry, time.time_ns(), time.monotonic() + FAR)  # the next run finishes it
    finally:
        r.close()
    assert os.listdir(root) == []


def test_a_tree_deeper_than_the_bound_is_left_without_crashing(root):
    base = pod_dir(root)
    deep = base / "app"
    for _ in range(tree.MAX_DEPTH + 5):
        deep = deep / "d"
    deep.mkdir(parents=True)
    r = opened(root)
    try:
        assert tree.measure(r, DEAD, time.monotonic() + FAR).problem == f"deeper than {tree.MAX_DEPTH} levels"
        with pytest.raises(tree.Leave, match="deeper"):
            tree.remove(r, DEAD, time.time_ns(), time.monotonic() + FAR)
    finally:
        r.close()
    assert deep.is_dir()


def test_a_tree_that_changes_during_deletion_keeps_its_name_for_the_next_run(root):
    base = pod_dir(root)
    r = opened(root)
    measured = tree.measure(r, DEAD, time.monotonic() + FAR)
    r.close()
    time.sleep(0.01)
    (base / "app" / "app.1.log").write_text("a late line\n")  # after the measurement
    with pytest.raises(tree.Changed):
        delete(root, since_ns=measured.last_change_ns)
    assert (root / DEAD).is_dir() and (base / "app" / "app.1.log").read_text() == "a late line\n"


def test_a_long_named_tree_that_changes_during_deletion_gets_its_own_name_back(root):
    long = "team_" + ".".join(["a" * 63, "b" * 63, "c" * 63]) + f"-xyz_{UID}"
    base = pod_dir(root, long)
    with pytest.raises(tree.Changed):
        delete(root, long, since_ns=0)  # everything is newer than that
    assert os.listdir(root) == [long] and (base / "app" / "app.1.log").exists()


def test_a_taken_deleting_name_is_left_not_replaced(root):
    long = "team_" + ".".join(["a" * 63, "b" * 63, "c" * 63]) + f"-xyz_{UID}"
    pod_dir(root, long)
    (root / f"{DELETING}team_{UID}").mkdir()  # empty: rename() would silently replace it
    with pytest.raises(tree.Leave, match="taken"):
        delete(root, long)
    assert sorted(os.listdir(root)) == sorted([long, f"{DELETING}team_{UID}"])


def test_hard_links_inside_the_tree_do_not_count_as_changes(root):
    base = pod_dir(root)
    os.link(base / "app" / "app.0.log", base / "app" / "zz-link")
    os.link(base / "app" / "app.0.log", base / "app" / "aa-link")
    delete(root)
    assert not (root / DEAD).exists()


@pytest.mark.parametrize("forged", [
    '{"keepUntil": 1' + "0" * 400 + "}",          # an int no float holds
    "[" * 2040 + "]" * 2040,                       # deeper than the parser's recursion limit
    '{"keepUntil": Infinity}', '{"keepUntil": NaN}', '{"keepUntil": -1e300}', '{"keepUntil": 1e300}',
    '{"keepUntil": "2027-01-01"}', '{"keepUntil": true}', '"x"', "\xff",
])
def test_a_forged_record_reads_as_no_record(root, forged):
    (pod_dir(root) / tree.RECORD).write_text(forged, encoding="latin-1")
    r = opened(root)
    try:
        assert tree.read_record(r, DEAD) is None
    finally:
        r.close()


def test_the_record_never_follows_a_link(root, decoy):
    base = pod_dir(root)
    before = snapshot(decoy)
    (base / tree.RECORD).symlink_to(decoy / "passwd")
    (base / (tree.RECORD + ".tmp")).symlink_to(decoy / "passwd")
    r = opened(root)
    try:
        assert tree.read_record(r, DEAD) is None
        tree.write_record(r, DEAD, Record(1234.5, True))
        assert tree.read_record(r, DEAD) == Record(1234.5, True)
    finally:
        r.close()
    assert snapshot(decoy) == before and not (base / tree.RECORD).is_symlink()



@pytest.mark.parametrize("pin,keep", [
    ("9999-12-31T23:59:59.5Z", LATEST),       # a fraction past the last second
    ("9999-12-31T22:00:00-05:00", LATEST),    # year 10000 in UTC
    ("1969-07-20T20:17:00Z", 0),              # before the epoch
])
def test_a_pin_outside_the_readable_range_is_recorded_clamped_and_reads_back(root, pin, keep):
    pod = Pod(UID, "team", "web-1", {"podmedic.io/log-keep-until": pin}, True)
    record, _ = Policy(load(), {}).record_of(pod)
    pod_dir(root)
    r = opened(root)
    try:
        tree.write_record(r, DEAD, record)
        assert tree.read_record(r, DEAD) == record == Record(keep, True)
    finally:
        r.close()

# -- mount points (root only) -------------------------------------------------------------------

def mount(*args: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")


@pytest.fixture
def mounts():
    made: list[Path] = []
    yield made
    for path in reversed(made):
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.parametrize("how", ["tmpfs", "bind"])
def test_a_mount_inside_the_tree_is_neither_read_nor_deleted(root, tmp_path, mounts, how):
    base = pod_dir(root)
    target = base / "app" / "mnt"
    target.mkdir()
    if how == "tmpfs":
        mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target))
    else:  # the same filesystem: only /proc/self/mountinfo tells
        source = tmp_path / "elsewhere"
        source.mkdir()
        mount("--bind", str(source), str(target))
    mounts.append(target)
    (target / "precious").write_text("keep me")
    r = opened(root)
    try:
        (candidate,) = tree.candidates(r)
        assert candidate.problem == "a mount point inside"
        if how == "tmpfs":  # a walk that starts anyway stops at the device boundary
            assert tree.measure(r, DEAD, time.monotonic() + FAR).problem == "a mount point inside"
            with pytest.raises(tree.Leave, match="mount point"):
                tree.remove(r, DEAD, time.time_ns(), time.monotonic() + FAR)
    finally:
        r.close()
    assert (target / "precious").read_text() == "keep me"


def test_a_bind_mount_put_into_a_begun_deletion_stops_its_removal(root, tmp_path, mounts):
    """The mount appears after the root was opened (its mount list is stale) in a tree already
    under its deleting name: remove itself must see it, the walk's device check cannot."""
    entry = DELETING + DEAD
    os.rename(pod_dir(root), root / entry)
    r = opened(root)
    try:
        source, target = tmp_path / "elsewhere", root / entry / "app" / "mnt"
        source.mkdir()
        target.mkdir()
        mount("--bind", str(source), str(target))
        mounts.append(target)
        (source / "precious").write_text("keep me")
        with pytest.raises(tree.Leave, match="a mount point inside"):
            tree.remove(r, entry, time.time_ns(), time.monotonic() + FAR)
    finally:
        r.close()
    assert (source / "precious").read_text() == "keep me"


def test_a_candidate_that_is_a_mount_point_is_left(root, mounts):
    target = root / DEAD
    target.mkdir()
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target))
    mounts.append(target)
    (target / "precious").write_text("keep me")
    r = opened(root)
    try:
        (candidate,) = tree.candidates(r)
        assert candidate.problem == "a mount point"
    finally:
        r.close()
    assert (target / "precious").read_text() == "keep me"


def test_a_platform_without_safe_rmtree_is_refused(monkeypatch):
    monkeypatch.setattr(shutil.rmtree, "avoids_symlink_attacks", False)
    with pytest.raises(tree.Unsafe, match="symlink-attack-safe"):
        tree.check_platform()
