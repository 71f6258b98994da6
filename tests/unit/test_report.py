"""womm's own messages on a terminal: a progress line is taken away before any other message."""

import io

from womm import errors, report


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_message_never_lands_at_the_end_of_a_progress_line(monkeypatch):
    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    progress = report.Progress()
    progress.update("0/1 pods ready (1 waiting)")
    report.say("lazy share: serving /d", "abc")
    progress.update("1/1 pods ready")
    errors.warn("careful", "womm-run")
    progress.done()
    # What the terminal shows, line by line: carriage returns rewrite the current line.
    shown = [line.split("\r")[-1] for line in term.getvalue().split("\n")]
    assert shown[:2] == ["womm: task abc: lazy share: serving /d", "womm-run: warning: careful"]
    assert all(line.strip() == "" for line in shown[2:])
    assert "womm: 0/1 pods ready (1 waiting)womm:" not in term.getvalue()


def test_printable_makes_control_characters_visible_and_keeps_the_rest():
    assert report.printable("a\tb\x1b[2J\u00e9\x9b") == "a\\x09b\\x1b[2J\u00e9\\x9b"


def test_a_program_ended_by_a_signal_ignores_the_next_one_while_it_exits(monkeypatch):
    """Two SIGTERMs in a row: the second may come while Python shuts down, when its own handlers are
    gone; the program must still end with 128 + SIGTERM, not be killed by the signal."""
    import signal

    import pytest

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    def interrupted(argv):
        with errors.deferred_signals():
            raise errors.Interrupted(signal.SIGTERM)

    try:
        with pytest.raises(SystemExit) as e:
            errors.run_main(interrupted, [], prog="womm-x")
        assert e.value.code == 128 + signal.SIGTERM
        assert all(signal.getsignal(s) == signal.SIG_IGN for s in saved)
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_a_second_signal_while_the_first_unwinds_does_not_interrupt_the_unwinding():
    """The window between the first signal and the cleanup's own handlers: nothing may cut it short."""
    import os
    import signal

    import pytest

    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    cleaned = []

    def interrupted(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)  # the first: raises here
        finally:
            os.kill(os.getpid(), signal.SIGTERM)  # the second, before any cleanup of its own began
            cleaned.append(True)

    try:
        with pytest.raises(SystemExit) as e:
            errors.run_main(interrupted, [], prog="womm-x")
        assert e.value.code == 128 + signal.SIGTERM and cleaned == [True]
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)


def test_a_signal_ignored_when_the_program_started_stays_ignored():
    """`nohup womm ...` and `womm ... &` in a script: the shell's choice, kept."""
    import subprocess
    import sys

    code = ("import signal, sys; from womm import errors; "
            "errors.run_main(lambda a: print(signal.getsignal(signal.SIGHUP) is signal.SIG_IGN, "
            "signal.getsignal(signal.SIGTERM) is signal.SIG_IGN), [], prog='x')")
    out = subprocess.run(["nohup", sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.split() == ["True", "False"]


def test_what_womm_says_and_its_errors_are_printable_whatever_they_quote(monkeypatch):
    term = Terminal()
    monkeypatch.setattr("sys.stderr", term)
    report.say("pod p: init container failed: \x1b]0;owned\x07\x1b[2K")
    errors.error("the server said \x1b[31mno\x1b[0m", "womm-run")
    assert "\x1b" not in term.getvalue() and "\x07" not in term.getvalue()
    assert "\\x1b]0;owned\\x07" in term.getvalue()
