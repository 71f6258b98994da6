"""What of this machine's environment the jobs in the pods get: the variables named with --env,
and exported bash functions (`export -f`, and env_parallel's), as GNU parallel gives them to
remote jobs. Nothing else leaves: the pods' own environment is the image's.

The agent writes both scripts once per pod (womm_run.podagent); runner.sh sources the sh one
before every job, and it points bash at the other (BASH_ENV), so that `bash -c` jobs, and any
bash they start, have the functions.
"""

import re

NAME = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
# Variables bash holds read-only: the pod's runner, under bash where the image has it, could not
# assign them before a job (every job would fail), and a bash job keeps its own anyway.
BASH_READONLY = {b"BASHOPTS", b"BASH_VERSINFO", b"EUID", b"PPID", b"SHELLOPTS", b"UID"}
FUNCTION = re.compile(rb"BASH_FUNC_(.+)%%")  # bash's name for an exported function


def sh_quote(value):
    return b"'" + value.replace(b"'", b"'\\''") + b"'"


def functions(environ):
    """{name: definition} of the bash functions exported in environ (bytes)."""
    out = {}
    for key, value in environ.items():
        m = FUNCTION.fullmatch(key)
        if m and value.startswith(b"() {"):
            out[m.group(1)] = value
    return out


def scripts(environ, names=()):
    """(sh script, bash script) for the pods: --env variables exported, functions defined.

    environ: os.environb; names: the variables and functions --env named (bytes). The variables bash
    holds read-only (BASH_READONLY) are not sent.
    """
    funcs = functions(environ)
    sh, bash = [], []
    for name in names:
        if name in funcs:
            continue  # all exported functions go anyway
        if NAME.fullmatch(name) and name in environ and name not in BASH_READONLY:
            sh.append(b"%s=%s; export %s" % (name, sh_quote(environ[name]), name))
    for name, definition in sorted(funcs.items()):
        # `name () { ...; }` then `export -f`: nested shells of the job see it too.
        bash.append(b"%s %s\nexport -f %s" % (name, definition, name))
    return b"\n".join(sh) + (b"\n" if sh else b""), b"\n".join(bash) + (b"\n" if bash else b"")


def frame_payload(environ, names=()):
    """The ENV frame's payload (womm_run.protocol), or b"" when the jobs get nothing."""
    from womm_run import protocol

    sh, bash = scripts(environ, names)
    if not sh and not bash:
        return b""
    return protocol.env(sh, bash)


def used_functions(environ, command):
    """The exported functions (names, str) that the command's words mention: those the jobs need."""
    words = set(re.findall(rb"[A-Za-z_][A-Za-z0-9_:.-]*", b" ".join(command)))
    return sorted(name.decode("utf-8", "replace") for name in functions(environ) if name in words)
