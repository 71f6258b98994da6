"""The records womm keeps under ~/.womm: user settings, projects and tasks.

Paths come from womm.home, file handling from womm.store; this module only
knows which record is which.

project: host, path, share (a kind of womm.shares), share_id,
         image, base_image, namespace, context, pull_secret
task:    what womm.tasks.create() makes, and `done` (jobs finished so far)
settings: prefix, and defaults for options (see womm.settings)
"""

import os

from womm import home, store


def load_settings():
    return store.read(home.settings_file(), "settings") or {}


def set_setting(key, value):
    """Set (or, with value None, forget) one user setting."""
    with store.update(home.settings_file(), "settings") as record:
        if value is None:
            record.pop(key, None)
            if set(record) <= {"schema"}:
                record.clear()
        else:
            record[key] = value


def load_project(directory):
    return store.read(home.project_file(directory), "project")


def find_project(directory):
    """The project record of directory, or of the nearest parent set up with `womm setup` (as git
    finds its repository from any subdirectory); None if there is none."""
    here = os.path.realpath(directory)
    while True:
        project = load_project(here)
        if project is not None:
            return project
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def require_project(directory):
    """find_project(), or WommError when neither the directory nor a parent is set up."""
    from womm.errors import WommError

    project = find_project(directory)
    if project is None:
        raise WommError(f"{directory} is not set up for womm (nor is a parent): run `womm setup` here first")
    return project


def save_project(directory, record):
    record = dict(record, host=home.hostname(), path=os.path.realpath(directory))
    store.write(home.project_file(directory), "project", record)


def update_project(directory):
    """Context manager: change a directory's project record in place, under the lock."""
    return store.update(home.project_file(directory), "project")


def load_task(task_id):
    return store.read(home.task_file(task_id), "task")


def save_task(record):
    store.write(home.task_file(record["id"]), "task", record)


def update_task(task_id):
    """Context manager: change a task record in place, under the lock."""
    return store.update(home.task_file(task_id), "task")


def remove_task(task_id):
    return store.remove(home.task_file(task_id))


def list_tasks():
    return [record for _, record in store.list_records(home.tasks_dir(), "task")]
