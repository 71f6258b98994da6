"""One error format for every womm program: `womm-<program>: error: <what, and what to do>`.

Programs raise WommError (or UsageError) with a one-line message; `run_main`
turns it into that line and an exit code. Tracebacks only with WOMM_DEBUG=1.
An error that comes from a misconfiguration (no kubeconfig, no share server, not
allowed to exec...) says so with doctor=True: its line ends with "run `womm doctor`",
added here, so that the messages themselves (which `womm doctor` prints) stay clean.
"""

import os
import sys

from womm import exitcodes

DOCTOR_HINT = "run `womm doctor`"


class WommError(Exception):
    """A failure the user can act on; the message says what happened and what to do."""

    exit_code = None  # None: the program's usual failure status
    doctor = False  # a misconfiguration `womm doctor` checks: the error line says to run it

    def __init__(self, message, exit_code=None, doctor=None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code
        if doctor is not None:
            self.doctor = doctor


def with_hint(message, e=None):
    """message (default: e's), ending with the hint to run `womm doctor` when e is a misconfiguration."""
    message = str(e) if message is None else message
    if e is not None and not getattr(e, "doctor", False):
        return message
    return message if message.endswith(DOCTOR_HINT) else f"{message}; {DOCTOR_HINT}"


def split_hint(message):
    """(message without the hint, whether it had it): to say more before the hint, as WommError(..., doctor=)."""
    if message.endswith("; " + DOCTOR_HINT):
        return message[:-len(DOCTOR_HINT) - 2], True
    return message, False


class UsageError(WommError):
    """Bad arguments or input: nothing was done."""

    exit_code = exitcodes.USAGE


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP: unwind (removing what was made) as for Ctrl-C."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _interrupted(signum, frame):
    # From the first signal on, the program unwinds to its end: another one (a second Ctrl-C or
    # SIGTERM) must not interrupt the unwinding, which removes what the program made.
    _ignore_signals()
    raise Interrupted(signum)


class deferred_signals:  # noqa: N801 - used as a statement: `with deferred_signals(log):`
    """While cleaning up, Ctrl-C, SIGTERM and SIGHUP are noted, not raised: the cleanup ends first.

    Blocking the signals would not do: Python runs its handlers in the main thread whichever
    thread the kernel gave the signal to. Main thread only (where handlers can be set).
    """

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self, log=None):
        self.log = log
        self.saved = {}

    def _noted(self, signum, frame):
        if self.log:
            self.log("still removing the task's objects: a moment")

    def __enter__(self):
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                signum = getattr(signal, name)
                self.saved[signum] = signal.signal(signum, self._noted)
        return self

    def __exit__(self, exc_type, exc, tb):
        import signal

        if exc_type is not None and issubclass(exc_type, KeyboardInterrupt):
            _ignore_signals()  # the program ends, interrupted: what comes now changes nothing
            return False
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)
        return False


def _ignore_signals():
    """For a program that ends because it was interrupted: a second signal, even one that comes while
    Python shuts down (when its handlers are gone), must not kill it with that signal instead of its
    exit status. Ignored dispositions survive Python's shutdown; its own handlers do not."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for name in deferred_signals.SIGNALS:
            signal.signal(getattr(signal, name), signal.SIG_IGN)


def debugging():
    return os.environ.get("WOMM_DEBUG", "") not in ("", "0")


def prog_name():
    return os.path.basename(sys.argv[0]) or "womm"


def error(message, prog=None):
    """Print one error line in the common format."""
    _line(f"{prog or prog_name()}: error: {message}")


def warn(message, prog=None):
    _line(f"{prog or prog_name()}: warning: {message}")


def _line(text):
    from womm.report import clear_progress, printable

    clear_progress()  # never at the end of a progress line
    print(printable(text), file=sys.stderr, flush=True)  # what it quotes from the cluster may hold anything


def run_main(main, argv=None, prog=None, error_exit=exitcodes.FAILURE):
    """Call main(argv) and exit with its status; errors become one line on stderr.

    `error_exit` is the status for failures that carry no code of their own
    (womm-run uses 255, as GNU parallel does).
    """
    import signal

    prog = prog or prog_name()
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(signum) is not signal.SIG_IGN:  # what was ignored when we started (nohup) stays so
            signal.signal(signum, _interrupted)
    try:
        status = main(argv)
    except WommError as e:
        if debugging():
            raise
        error(with_hint(None, e), prog)
        sys.exit(e.exit_code if e.exit_code is not None else error_exit)
    except KeyboardInterrupt as e:
        _ignore_signals()
        if debugging():
            raise
        print(file=sys.stderr)
        sys.exit(128 + e.signum if isinstance(e, Interrupted) else exitcodes.INTERRUPTED)
    except BrokenPipeError:
        # `womm status | head`: the reader went away; that is not our failure.
        try:
            sys.stdout = None
        finally:
            os._exit(exitcodes.OK)
    except Exception as e:  # noqa: BLE001 - the last line of defence
        if debugging():
            raise
        error(f"{describe(e)} (run with WOMM_DEBUG=1 for the traceback)", prog)
        sys.exit(error_exit)
    sys.exit(status or exitcodes.OK)


def describe(e):
    """A short, human description of an exception from a library (one line)."""
    import re

    # docker.errors.APIError (and the kubernetes library's ApiException) carry a reason and a body:
    # prefer the server's own message.
    body = getattr(e, "body", None)
    if body:
        try:
            import json

            message = json.loads(body).get("message")
            if message:
                return message
        except (ValueError, AttributeError, TypeError):
            pass
    for attr in ("explanation", "reason"):
        text = getattr(e, attr, None)
        if isinstance(text, str) and text:
            status = getattr(e, "status", None) or getattr(e, "status_code", None)
            return f"{status} {text}" if status else text
    text = str(e)
    # urllib3: "HTTPSConnectionPool(host=..., port=...): Max retries exceeded ... (Caused by X('...'))"
    host = re.search(r"host='([^']+)', port=(\d+)", text)
    import socket

    if isinstance(e, OSError) and not isinstance(e, (ConnectionError, TimeoutError, socket.gaierror)) \
            and not host and e.strerror:
        return f"{e.strerror}: {e.filename}" if e.filename else e.strerror  # a local failure, not the network's
    for pattern, say in (
        (r"certificate verify failed: ([^(')]+)", "certificate verify failed: {}"),
        (r"\[Errno \d+\] ([^')]+)", "{}"),
        (r"Read timed out", "read timed out"),
    ):
        m = re.search(pattern, text)
        if m:
            reason = say.format(*(g.strip() for g in m.groups()))
            where = f"{host.group(1)}:{host.group(2)}" if host else "the server"
            return f"cannot talk to {where}: {reason}"
    lines = text.strip().splitlines()
    return (lines[0][:300] if lines else "") or type(e).__name__
