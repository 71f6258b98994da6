"""Records under ~/.womm: small JSON files, written atomically, changed under a lock; and
write_bytes(), the one atomic write of any file.

- A write goes to a uniquely named temporary file in the same directory, is
  fsync'ed, then renamed over the record: a reader sees the old record or the
  new one, never half of either, and a crash mid-write leaves the old one.
- `update()` holds an exclusive flock on the directory's `.lock` file around
  read-modify-write, so concurrent womm processes don't lose each other's changes.
- Every record carries `schema`. A newer one is refused; an older one is
  migrated on read by the functions in MIGRATIONS.
"""

import contextlib
import fcntl
import json
import os
import tempfile
from pathlib import Path

from womm.errors import WommError, warn

# The schema each kind of record is written with. Bump it together with a
# migration from the previous number.
SCHEMAS = {"settings": 1, "project": 1, "task": 1}

# MIGRATIONS[kind][n](record) returns the record in schema n + 1.
MIGRATIONS = {
    "settings": {},
    "project": {},
    "task": {},
}


class NewerSchemaError(WommError):
    pass


def read(path, kind):
    """The record at path, migrated to the current schema; None if missing or unreadable."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        warn(f"ignoring unreadable record {path}: {e}")
        return None
    if not isinstance(record, dict):
        warn(f"ignoring malformed record {path}")
        return None
    return _migrate(path, kind, record)


def _migrate(path, kind, record):
    current = SCHEMAS[kind]
    version = record.get("schema", 0)
    if not isinstance(version, int) or version > current:
        raise NewerSchemaError(
            f"{path} was written by a newer womm (schema {version}; this womm knows "
            f"{current}): upgrade womm, or move {path} away"
        )
    while version < current:
        step = MIGRATIONS[kind].get(version)
        if step is None:
            raise WommError(f"{path}: no migration from {kind} schema {version}; move it away")
        record = step(dict(record))
        version += 1
        record["schema"] = version
    return record


def write(path, kind, record):
    """Replace the record at path atomically."""
    record = dict(record, schema=SCHEMAS[kind])
    write_bytes(path, json.dumps(record, indent=1, sort_keys=True).encode() + b"\n")


def write_bytes(path, data, mode=0o600):
    """Replace the file at path with data, atomically: a reader sees the old file or the new one,
    never half of either, and a crash leaves the old one. The one way womm writes a file whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def remove(path):
    """Delete a record; True if it existed."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    _fsync_dir(Path(path).parent)
    return True


@contextlib.contextmanager
def locked(directory):
    """Exclusive lock over the records of one directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def update(path, kind):
    """Read-modify-write under the directory lock.

    Yields the record (an empty dict when there is none) to change in place.
    Clear it (`record.clear()`) to delete the record instead.
    """
    path = Path(path)
    with locked(path.parent):
        record = read(path, kind) or {}
        yield record
        if record:
            write(path, kind, record)
        else:
            remove(path)


def list_records(directory, kind):
    """[(path, record)] of every readable record in directory, sorted by name."""
    directory = Path(directory)
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        if name.endswith(".json") and not name.startswith("."):
            record = read(directory / name, kind)
            if record is not None:
                out.append((directory / name, record))
    return out


def _fsync_dir(directory):
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
