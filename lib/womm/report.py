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


class Progress:
    """One line on a terminal's stderr, rewritten in place as things move; nothing elsewhere."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.shown = ""

    def update(self, text):
        if self.tty and text != self.shown:
            pad = " " * max(0, len(self.shown) - len(text))
            self.stream.write(f"\rwomm: {text}{pad}")
            self.stream.flush()
            self.shown = text

    def done(self):
        """End the line (before any other message is written)."""
        if self.tty and self.shown:
            self.stream.write("\r" + " " * (len(self.shown) + 6) + "\r")
            self.stream.flush()
            self.shown = ""
