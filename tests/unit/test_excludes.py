"""What never leaves this machine: the secrets lists, in serve-sftp, and the NetworkPolicies' selectors."""

import os
import subprocess
import sys

from sftpclient import CREAT, OK, WRITE_, Client, close, open_, opendir, read, readdir

from womm import excludes, manifests

SECRET = b"-----BEGIN OPENSSH PRIVATE KEY-----\n"


def test_entries_match_at_any_depth_and_as_path_endings():
    patterns = excludes.DEFAULT
    for rel in (".ssh", ".ssh/id_rsa", "sub/.ssh/id_rsa", ".docker/config.json", "a/.docker/config.json", ".netrc"):
        assert excludes.matches(rel, patterns), rel
    for rel in ("ssh", "x.ssh", ".docker/other.json", "notes/.netrc.txt", "src/main.c"):
        assert not excludes.matches(rel, patterns), rel


def test_the_setting_replaces_the_list(monkeypatch):
    monkeypatch.setenv("WOMM_SHARE_EXCLUDE", ".ssh, private")
    assert excludes.excluded() == [".ssh", "private"]


def test_serve_sftp_never_serves_an_excluded_path_even_through_a_link(tmp_path):
    d = tmp_path / "home"
    (d / ".ssh").mkdir(parents=True)
    (d / ".ssh" / "id_rsa").write_bytes(SECRET)
    (d / "keys").symlink_to(".ssh")  # a link inside the directory to what is excluded
    (d / "src.txt").write_bytes(b"shared\n")
    argv = [sys.executable, "-m", "womm_fs", "serve-sftp", "--exclude=.ssh", "--exclude=.netrc", str(d)]
    client = Client(argv)
    for path in (f"{d}/.ssh/id_rsa", f"{d}/keys/id_rsa", "keys/id_rsa", ".ssh/id_rsa"):
        reply = client.one(open_, path)
        assert reply.handle is None, path
    reply = client.one(opendir, f"{d}/keys")
    assert reply.handle is None
    h = client.one(opendir, str(d)).handle
    listed = set()
    while (r := client.one(readdir, h)).kind != 101:  # STATUS: the end of the listing
        listed |= {n.decode() for n, *_ in r.names}
    client.one(close, h)
    assert ".ssh" not in listed and "src.txt" in listed
    # Nothing can be planted there either (an authorized_keys, through the link).
    assert client.one(open_, f"{d}/keys/authorized_keys", CREAT | WRITE_).handle is None
    assert not (d / ".ssh" / "authorized_keys").exists()
    h = client.one(open_, f"{d}/src.txt").handle
    assert client.one(read, h).data == b"shared\n" and client.one(close, h).code == OK
    assert client.close()[0] == 0
    assert os.path.exists(d / ".ssh" / "id_rsa")


def selects(selector, labels):
    """Whether a Kubernetes label selector (matchLabels, matchExpressions: Exists) selects these labels."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(e["operator"] == "Exists" and e["key"] in labels for e in selector.get("matchExpressions") or [])


def test_network_policies_select_what_they_should():
    """The local cluster's bridge CNI enforces no NetworkPolicy: what they select is checked here."""
    import dataclasses

    from womm.tasks import Task

    task = Task(id="abcdefgh", kind="parallel", mode="sync", command=[], cwd="/d", root="/d", namespace="ns",
                image="u", host="h", share="eager", share_id="s1", helper_image="img", mem="1Gi")
    server = next(o for o in manifests.share_server("img", "ns") if o["kind"] == "NetworkPolicy")
    worker = manifests.worker_replicaset(task, {}, "img", "true")["spec"]["template"]["metadata"]["labels"]
    server_pod = manifests.share_server("img", "ns")[0]["spec"]["template"]["metadata"]["labels"]
    assert selects(server["spec"]["podSelector"], server_pod)
    (rule,) = server["spec"]["ingress"]
    assert selects(rule["from"][0]["podSelector"], worker)  # an eager share's worker may reach it
    stranger = {"app": "something-else"}
    none_share = manifests.worker_replicaset(dataclasses.replace(task, share="none"), {}, "img", "true")
    assert not selects(rule["from"][0]["podSelector"], stranger)
    assert not selects(rule["from"][0]["podSelector"], none_share["spec"]["template"]["metadata"]["labels"])
    assert rule["ports"] == [{"protocol": "TCP", "port": manifests.RSYNC_CONTAINER_PORT}]

    cache_pod, cache_policy = manifests.share_cache(task, 2222)
    assert selects(cache_policy["spec"]["podSelector"], cache_pod["metadata"]["labels"])
    (rule,) = cache_policy["spec"]["ingress"]
    assert selects(rule["from"][0]["podSelector"], worker)
    other_task = manifests.worker_replicaset(dataclasses.replace(task, id="zzzzzzzz"), {}, "img", "true")
    assert not selects(rule["from"][0]["podSelector"], other_task["spec"]["template"]["metadata"]["labels"])


def test_an_eager_upload_leaves_out_every_other_name_of_a_secret(tmp_path, monkeypatch):
    """rsync with excludes.rsync_args: hard links to secrets (here or in the home directory) and what a
    secret's symlink leads to stay here, whatever their names."""
    d, user_home, sent = tmp_path / "proj", tmp_path / "user-home", tmp_path / "sent"
    (d / ".ssh").mkdir(parents=True)
    (d / ".ssh" / "id_rsa").write_bytes(SECRET)
    (d / "dotfiles").mkdir()
    (d / "dotfiles" / "ssh_config").write_text("Host *\n")
    (d / ".ssh" / "config").symlink_to("../dotfiles/ssh_config")
    (d / "src.txt").write_text("shared\n")
    os.link(d / ".ssh" / "id_rsa", d / "backup-key")
    os.link(d / ".ssh" / "id_rsa", d / "we*ird [1]")  # rsync reads wildcards in a pattern
    (user_home / ".aws").mkdir(parents=True)
    (user_home / ".aws" / "credentials").write_text("aws\n")
    os.link(user_home / ".aws" / "credentials", d / "aws-copy")
    monkeypatch.setenv("HOME", str(user_home))
    args = excludes.rsync_args(excludes.DEFAULT, str(d))
    subprocess.run(["rsync", "-a", *args, f"{d}/", f"{sent}/"], check=True)
    assert sorted(os.listdir(sent)) == ["dotfiles", "src.txt"]
    assert os.listdir(sent / "dotfiles") == []
