"""womm's own messages to the user: one prefix, always on stderr (stdout is for what scripts read).

`womm: MESSAGE`, or `womm: task ID: MESSAGE` while a task runs; progress() only
where someone watches (stderr is a terminal).
"""

import sys


def say(message, task_id=None):
    prefix = f"womm: task {task_id}: " if task_id else "womm: "
    print(prefix + message, file=sys.stderr, flush=True)


class Reporter:
    """The messages of one task (or of none yet)."""

    def __init__(self, task_id=None):
        self.task_id = task_id
        self.tty = sys.stderr.isatty()

    def log(self, message):
        say(message, self.task_id)

    def progress(self, message):
        if self.tty:
            self.log(message)
