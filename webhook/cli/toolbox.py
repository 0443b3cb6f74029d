"""`podmedic toolbox build | install` and `podmedic logdir`: the commands the image build and
podmedic's init containers run (webhook.toolbox does the work).
"""

from __future__ import annotations

import argparse
import errno
import subprocess
from typing import Any

from webhook.cli.env import path
from webhook.toolbox.build import DEFAULT_SOURCE, ToolboxError, build, install
from webhook.toolbox.logdir import prepare


def register(sub: Any) -> None:
    """`podmedic toolbox build | install` and `podmedic logdir`: what the image build and the
    init containers run."""
    _register_logdir(sub)
    p = sub.add_parser("toolbox", help="build or install the in-pod toolbox")
    commands = p.add_subparsers(dest="toolbox_command", required=True)
    b = commands.add_parser("build", help="assemble a toolbox from the package and busybox-static/tini")
    b.add_argument("dest", type=path())
    b.set_defaults(func=lambda a: _run(build, a.dest))
    i = commands.add_parser("install", help="copy a built toolbox into DEST (the init container's job)")
    i.add_argument("dest", type=path())
    i.add_argument("--from", dest="source", type=path(), help=f"built toolbox (default $PODMEDIC_TOOLBOX_DIR or {DEFAULT_SOURCE})")
    i.set_defaults(func=lambda a: _run(install, a.dest, a.source))


def _run(action: Any, *args: Any) -> int:
    try:
        action(*args)
    except (ToolboxError, OSError, subprocess.SubprocessError) as exc:
        print(f"podmedic toolbox: {exc}")
        return 1
    print(f"podmedic toolbox: {args[0]} ready")
    return 0


def _register_logdir(sub: Any) -> None:
    p = sub.add_parser("logdir", help="(init container) prepare a pod's log directories",
                       description="Create <root>/<pod-dir>/<container> for each container, writable by any UID.")
    p.add_argument("--root", type=path(), required=True, help="where the log volume's root is mounted")
    p.add_argument("--pod-dir", required=True, help="<namespace>_<pod name>_<pod uid>")
    p.add_argument("containers", nargs="+", help="container names")
    p.set_defaults(func=_logdir)


# What follows a failed preparation. Where only this UID may not write (a claim root that is not
# 1777), the kubelet creates the directories itself when it mounts them, root-owned. Where nobody
# may (a full or read-only root: seen on the real node), its subPath mkdir fails as well and the
# app's containers wait until the root is writable again; exiting 0 here still lets them start then.
_KUBELET_CREATES = "the kubelet creates the directories instead, root-owned (the log root's mode: 1777 lets any UID write)"
_UNWRITABLE = ("the kubelet cannot create them either: the pod's containers wait (CreateContainerConfigError, "
               "\"failed to create subPath directory\") until the log root is writable again")
_NOBODY_WRITES = frozenset((errno.ENOSPC, errno.EROFS, errno.EDQUOT))


def _logdir(args: argparse.Namespace) -> int:
    for name in [args.pod_dir, *args.containers]:
        if "/" in name or name in ("", ".", ".."):
            print(f"podmedic logdir: invalid directory name {name!r}")
            return 1
    try:
        made = prepare(args.root, args.pod_dir, args.containers)
    except OSError as exc:  # never fail the pod here: what the kubelet can still do is said
        print(f"podmedic logdir: cannot prepare {args.root}/{args.pod_dir}: {exc.strerror or exc}; "
              + (_UNWRITABLE if exc.errno in _NOBODY_WRITES else _KUBELET_CREATES))
        return 0
    for path in made:
        print(f"podmedic logdir: {path} ready")
    return 0
