"""The eager share's local side."""


def test_two_runs_making_a_shares_key_at_once_get_the_same_one(tmp_path, monkeypatch):
    """The other run writes the key between this one's look and its own write."""
    from womm import home
    from womm.shares import eager

    monkeypatch.setenv("WOMM_HOME", str(tmp_path))
    path = home.share_secret_file("s1")
    real = eager.secrets.token_hex

    def racing(n):
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("theirs\n")
        return real(n)

    monkeypatch.setattr(eager.secrets, "token_hex", racing)
    assert eager.share_password("s1") == "theirs"
    assert [p.name for p in path.parent.iterdir()] == ["s1.secret"]  # nothing left beside it


def test_the_share_servers_newest_ready_pod_is_used():
    """A Deployment made again: its predecessor's pod, older, still Ready (or not yet marked for
    deletion) is not the one exec'd into; nor one being deleted; none ready: None."""
    from womm.shares import eager

    def pod(name, created, ready=True, deleting=False):
        meta = {"name": name, "creationTimestamp": created, **({"deletionTimestamp": "x"} if deleting else {})}
        return {"metadata": meta, "status": {"phase": "Running", "containerStatuses": [{"ready": ready}]}}

    old, new = pod("old", "2026-12-03T10:00:00Z"), pod("new", "2026-12-03T10:05:00Z")
    assert eager.newest_ready([old, new])["metadata"]["name"] == "new"
    assert eager.newest_ready([new, old])["metadata"]["name"] == "new"
    assert eager.newest_ready([old, pod("going", "2026-12-03T10:09:00Z", deleting=True)])["metadata"]["name"] == "old"
    assert eager.newest_ready([pod("starting", "2026-12-03T10:09:00Z", ready=False)]) is None
