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
