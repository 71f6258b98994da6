"""womm's own messages to the user: one prefix, always on stderr (stdout is for what scripts read).

`womm: MESSAGE`, or `womm: task ID: MESSAGE` while a task runs; progress() only where someone
watches (stderr is a terminal). A progress line is rewritten in place; any other message
clears it first (and it comes back at its next update), so that no message ever lands at the
end of a progress line. Text that comes from the cluster (a pod's note, a helper's stderr)
goes through printable() before it is shown as womm's own. notice() is for the layers that
know no task (womm.kube): a task's Reporter, once made, carries those too.
"""

import sys
import threading
import unicodedata

PREFIX = "womm: "

_lock = threading.RLock()  # messages come from several threads: one line at a time
_shown = None  # the Progress whose line is on the terminal now


def clear_progress():
    """Take the progress line, if one is shown, off the terminal (before another message)."""
    with _lock:
        if _shown is not None:
            _shown.done()


def printable(text):
    """text with its control characters shown as escapes (\\x1b, \\u202e): what came from the cluster
    (a file's name, a pod's message), printed among womm's own words, cannot move the cursor, retitle
    the terminal, or pass for a line of womm's. The jobs' own output never goes through here."""
    if text.isprintable():
        return text
    return "".join(_visible(c) if unicodedata.category(c) in ("Cc", "Cf", "Cs", "Zl", "Zp") else c for c in text)


def _visible(c):
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}"


def say(message, task_id=None):
    """One line of womm's. What it quotes from the cluster (a scheduler's reason, an API's message, a
    container's termination message) may hold anything: it is made printable here, once for all."""
    prefix = f"{PREFIX}task {task_id}: " if task_id else PREFIX
    with _lock:
        clear_progress()
        print(prefix + printable(message), file=sys.stderr, flush=True)


_notices = None  # where notice() goes: the log of the process's task Reporter, once it has one


def notice(message):
    """What the program's layers below tell the user unasked (womm.kube: the API server's warnings,
    its throttling): through the task's Reporter when the process runs one, else as say() does."""
    (_notices or say)(message)


class Reporter:
    """The messages of one task (or of none yet)."""

    def __init__(self, task_id=None):
        global _notices
        self.task_id = task_id
        self.tty = sys.stderr.isatty()
        if task_id:
            _notices = self.log  # a task's notices name it, as its other messages do

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
        global _shown
        with _lock:
            if self.tty and text != self.shown:
                if _shown is not None and _shown is not self:
                    _shown.done()
                pad = " " * max(0, len(self.shown) - len(text))
                self.stream.write(f"\r{PREFIX}{text}{pad}")
                self.stream.flush()
                self.shown = text
                _shown = self

    def done(self):
        """End the line (before any other message is written)."""
        global _shown
        with _lock:
            if self.tty and self.shown:
                self.stream.write("\r" + " " * (len(self.shown) + len(PREFIX)) + "\r")
                self.stream.flush()
                self.shown = ""
            if _shown is self:
                _shown = None
