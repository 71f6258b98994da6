"""The ~/.womm store: atomic writes, locked updates, schema checks."""

import json
import multiprocessing
import os

import pytest

from womm import home, records, store


def test_write_then_read_round_trips(tmp_path):
    path = tmp_path / "r.json"
    store.write(path, "task", {"id": "abc", "pid": 1})
    assert store.read(path, "task") == {"id": "abc", "pid": 1, "schema": store.SCHEMAS["task"]}


def test_missing_and_corrupt_records_read_as_none(tmp_path, capsys):
    assert store.read(tmp_path / "nope.json", "task") is None
    bad = tmp_path / "bad.json"
    bad.write_text('{"id": "ab')
    assert store.read(bad, "task") is None
    assert "unreadable record" in capsys.readouterr().err


def _crash_midway(path):
    """Child: start replacing the record, die (like SIGKILL) after half of the bytes."""
    real_fdopen = os.fdopen

    def fdopen(fd, mode):
        f = real_fdopen(fd, mode)
        real_write = f.write

        def write(data):
            real_write(data[: len(data) // 2])
            f.flush()
            os._exit(9)

        f.write = write
        return f

    os.fdopen = fdopen
    store.write(path, "task", {"id": "new", "payload": "x" * 100000})


def test_crash_in_the_middle_of_a_write_leaves_the_old_record(tmp_path):
    path = tmp_path / "t.json"
    store.write(path, "task", {"id": "old"})
    child = multiprocessing.get_context("fork").Process(target=_crash_midway, args=(path,))
    child.start()
    child.join(30)
    assert child.exitcode == 9
    assert store.read(path, "task")["id"] == "old"
    # The half-written temporary file is not a record.
    assert [r["id"] for _, r in store.list_records(tmp_path, "task")] == ["old"]


def test_failed_write_cleans_its_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "t.json"
    store.write(path, "task", {"id": "old"})

    def boom(*a):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        store.write(path, "task", {"id": "new"})
    assert sorted(os.listdir(tmp_path)) == ["t.json"]
    assert store.read(path, "task")["id"] == "old"


def _bump(path, key, times):
    for _ in range(times):
        with store.update(path, "settings") as record:
            record[key] = record.get(key, 0) + 1


def test_two_concurrent_writers_both_land(tmp_path):
    path = tmp_path / "settings.json"
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_bump, args=(path, key, 150)) for key in ("a", "b")]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    record = store.read(path, "settings")
    assert (record["a"], record["b"]) == (150, 150)


def test_newer_schema_is_refused_with_a_clear_message(tmp_path):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"id": "x", "schema": store.SCHEMAS["task"] + 1}))
    with pytest.raises(store.NewerSchemaError, match="newer womm.*upgrade womm"):
        store.read(path, "task")


def test_older_schema_is_migrated(tmp_path, monkeypatch):
    monkeypatch.setitem(store.SCHEMAS, "task", 3)
    monkeypatch.setitem(store.MIGRATIONS, "task", {
        1: lambda r: dict(r, cwd=r.pop("dir")),
        2: lambda r: dict(r, mode=r.get("mode", "sync")),
    })
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"id": "x", "dir": "/p", "schema": 1}))
    assert store.read(path, "task") == {"id": "x", "cwd": "/p", "mode": "sync", "schema": 3}


def test_update_with_cleared_record_deletes_it(tmp_path):
    path = tmp_path / "t.json"
    store.write(path, "task", {"id": "x"})
    with store.update(path, "task") as record:
        record.clear()
    assert not path.exists()


def test_layout_follows_womm_home(womm_env, tmp_path):
    assert home.root() == womm_env
    records.set_setting("prefix", "reg/x/")
    assert json.loads(home.settings_file().read_text())["prefix"] == "reg/x/"
    records.set_setting("prefix", None)
    assert not home.settings_file().exists()
    d = tmp_path / "proj"
    d.mkdir()
    records.save_project(d, {"share": "lazy"})
    assert records.load_project(d)["path"] == str(d.resolve())
    assert home.project_file(d).parent == womm_env / "projects" / home.hostname()


def test_settings_resolution_order(womm_env, monkeypatch):
    from womm.settings import resolve

    assert resolve("kube-mem", None, "512Mi") == "512Mi"
    records.set_setting("kube-mem", "1Gi")
    assert resolve("kube-mem", None, "512Mi") == "1Gi"
    monkeypatch.setenv("WOMM_KUBE_MEM", "2Gi")
    assert resolve("kube-mem", None, "512Mi") == "2Gi"
    assert resolve("kube-mem", "3Gi", "512Mi") == "3Gi"


def test_a_subdirectory_belongs_to_the_nearest_project_and_its_own_wins(womm_env, tmp_path):
    top, sub, deep = tmp_path / "proj", tmp_path / "proj" / "src", tmp_path / "proj" / "src" / "x" / "y"
    deep.mkdir(parents=True)
    records.save_project(top, {"share": "eager", "image": "i"})
    assert records.find_project(deep)["path"] == str(top.resolve())
    records.save_project(sub, {"share": "none", "image": "j"})
    assert records.find_project(deep)["path"] == str(sub.resolve())
    assert records.find_project(tmp_path) is None
