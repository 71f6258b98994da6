"""The first hour: a new namespace used at once, a subdirectory, images built twice."""

from __future__ import annotations

import json
import subprocess

import pytest
from womm_fixtures import run_womm

pytestmark = pytest.mark.e2e


def test_a_new_namespace_used_at_once_after_cluster_setup(cluster, namespace, womm_images, project_image, tmp_path):
    """No start-up race: `cluster-setup --apply` returns once the share server runs."""
    home, d = tmp_path / "home", tmp_path / "proj"
    (d / "src").mkdir(parents=True)
    (d / "README.md").write_text("womm\n\nfiles\n")
    (d / "src" / "a.sh").write_text("1\n2\n3\n")
    applied = run_womm(["cluster-setup", "--apply", "--namespace", namespace, "--helper-image", womm_images], home)
    assert "rolled out" in applied.stdout
    run_womm(["setup", "--share", "eager", "--image", project_image, "--namespace", namespace,
              "--prefix", f"{cluster.registry}/womm-e2e/", "--yes"], home, cwd=d)
    files = subprocess.run(["find", ".", "-type", "f"], cwd=d, capture_output=True, text=True).stdout
    ours = run_womm(["parallel", "--kube-pods", "3", "--kube-cpu", "0.25", "--", "wc", "-l", "{}"], home, cwd=d,
                    input=files)
    theirs = subprocess.run(["parallel", "wc", "-l", "{}"], cwd=d, input=files, capture_output=True, text=True)
    assert sorted(ours.stdout.splitlines()) == sorted(theirs.stdout.splitlines())


def test_jobs_run_in_the_subdirectory_of_a_set_up_directory(womm, tmp_path):
    d = womm.setup_dir(tmp_path / "proj", "eager")
    (d / "src").mkdir()
    (d / "src" / "here.txt").write_text("in src\n")
    (d / "top.txt").write_text("at the top\n")
    out = womm("parallel", "--kube-pods", "1", "--", "pwd; cat here.txt ../top.txt; : {}", ":::", "1",
               cwd=d / "src").stdout
    assert out.splitlines() == [str(d / "src"), "in src", "at the top"]


def test_build_images_twice_gives_the_same_tag(cluster, womm_images, womm_session_home):
    prefix = f"{cluster.registry}/womm-e2e/"
    again = run_womm(["build-images", "--prefix", prefix, "--base-image", cluster.base_image],
                     womm_session_home, timeout=1200)
    settings = json.loads((womm_session_home / "settings.json").read_text())
    assert settings["helper-image"] == womm_images
    assert womm_images in again.stdout  # the objects it prints name the same image
