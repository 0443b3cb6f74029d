"""The node group's teardown removes the per-pod log directories its namespaces left under the
log root (deploy/'s hostPath root is this machine's own filesystem on ../shared/kube-node, and
`kube-node stop --wipe` does not touch it), and nothing else there: not another run's, not the
admin's, not another helper's. No node needed: a directory tree stands for the root."""

from __future__ import annotations

from pathlib import Path

from tests.node.conftest import remove_log_dirs


def test_only_this_runs_namespaces_and_subdirectories_are_removed(tmp_path: Path) -> None:
    ours = ["e2e-0a1b2c3d_web_5f0e", "e2e-0a1b2c3d_job-x7k_9c1d", "e2e-11112222_reader_77aa", "claim-e2e-abc123"]
    others = ["e2e-0a1b2c3dd_web_1234",  # a namespace whose name merely starts like one of ours
              "e2e-99999999_web_8888",   # another run's
              "dbg-on_c-dbg_4444", "claim-e2e-ffffff", "e2e-0a1b2c3d"]  # a file, not a pod directory
    for name in ours + others[:-1]:
        (tmp_path / name / "app").mkdir(parents=True)
        (tmp_path / name / "app" / "app.log").write_text("up\n")
    (tmp_path / others[-1]).write_text("not ours\n")
    removed = remove_log_dirs(tmp_path, ["e2e-0a1b2c3d", "e2e-11112222", "e2e-33334444"], ["claim-e2e-abc123"])
    assert sorted(removed) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(others)


def test_a_missing_root_removes_nothing(tmp_path: Path) -> None:
    assert remove_log_dirs(tmp_path / "absent", ["e2e-0a1b2c3d"], ["claim-e2e-abc123"]) == []
