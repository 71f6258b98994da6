"""The testbed: a container of the base image where the user makes the program work.

It has the caller's user (name, uid, gid), sudo where the caller is not root,
the project directory at its own path (unless the share is "none"), and the
host's / read-only at /mnt. What the user installs, and the variables they
export, become the image the pods run.
"""

import grp
import json
import os
import pwd
import shlex
import time

from womm import docker_engine, taskobjects
from womm.errors import WommError

ENV_BEFORE = "/tmp/.womm-env0"
ENV_AFTER = "/tmp/.womm-env1"

# Files a session leaves behind that are nobody's work.
NOISE = [
    ENV_BEFORE, ENV_AFTER, "/tmp/.womm-script",
    "{home}/.bash_history", "{home}/.sh_history", "{home}/.ash_history", "{home}/.zsh_history",
    "{home}/.python_history", "{home}/.lesshst", "{home}/.viminfo", "{home}/.wget-hsts",
    "{home}/.sudo_as_admin_successful", "/root/.bash_history", "/root/.ash_history",
    "/root/.python_history", "/root/.lesshst", "/root/.viminfo", "/root/.wget-hsts",
]

# Files where credentials live: removed from the testbed before it becomes an image.
CREDENTIAL_FILES = [
    "{home}/.netrc", "{home}/.git-credentials", "{home}/.docker/config.json", "{home}/.kube/config",
    "{home}/.aws/credentials", "{home}/.pgpass", "{home}/.vault-token", "{home}/.ssh/id_*",
]

# Variables never saved into the image: the session's own, and credentials.
NOT_SAVED = {
    "HOSTNAME", "PWD", "OLDPWD", "SHLVL", "_", "TERM", "HOME", "USER", "LOGNAME", "SHELL",
    "PROMPT_COMMAND", "HISTFILE", "ENV", "MAIL", "LS_COLORS", "SUDO_USER", "SUDO_UID", "SUDO_GID",
    "SUDO_COMMAND", "COLUMNS", "LINES",
}
CREDENTIAL_HINTS = ("KUBECONFIG", "DOCKER_CONFIG", "DOCKER_HOST", "TOKEN", "SECRET", "PASSWORD", "PASSWD",
                    "CREDENTIAL", "AWS_ACCESS_KEY", "AWS_SESSION", "PRIVATE_KEY", "API_KEY")

# Runs as root when the testbed starts: the caller's user and group, and sudo.
PREPARE = r"""
set -e
name=$1 uid=$2 gid=$3 group=$4 home=$5 dir=$6 want_sudo=$7
if ! grep -q "^[^:]*:[^:]*:$gid:" /etc/group; then echo "$group:x:$gid:" >> /etc/group; fi
if ! grep -q "^$name:" /etc/passwd; then
    shell=/bin/sh; [ -x /bin/bash ] && shell=/bin/bash
    echo "$name:x:$uid:$gid::$home:$shell" >> /etc/passwd
    if [ -f /etc/shadow ]; then echo "$name:*:19000:0:99999:7:::" >> /etc/shadow; fi
fi
mkdir -p "$home" "$dir"
chown "$uid:$gid" "$home"
[ -n "$(ls -A "$dir" 2>/dev/null)" ] || chown "$uid:$gid" "$dir"
if [ "$want_sudo" = yes ] && ! command -v sudo >/dev/null 2>&1; then
    if command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo) >/dev/null
    elif command -v dnf >/dev/null; then dnf install -y -q sudo >/dev/null
    elif command -v yum >/dev/null; then yum install -y -q sudo >/dev/null
    elif command -v apk >/dev/null; then apk add -q sudo >/dev/null
    elif command -v zypper >/dev/null; then zypper -q install -y sudo >/dev/null
    else echo "womm: no package manager found to install sudo with" >&2
    fi
fi
if [ "$want_sudo" = yes ] && [ -d /etc/sudoers.d ]; then
    echo "$name ALL=(ALL) NOPASSWD:ALL" > /etc/sudoers.d/womm
    chmod 0440 /etc/sudoers.d/womm
fi
"""

# What womm's runtime needs in the image: a POSIX shell and sleep (the pods' PID 1).
CHECK = "command -v sh >/dev/null && command -v sleep >/dev/null && echo ok"

# The exec's terminal gets its size with the first resize, just after the exec starts: the shell
# waits for it (a second at most), or it would draw its first prompt 80 columns wide.
WAIT_FOR_SIZE = 'i=0; while [ "$(stty size 2>/dev/null)" = "0 0" ] && [ $i -lt 50 ]; do sleep 0.02; i=$((i+1)); done; '


class Caller:
    """Who runs womm setup: the testbed's user is the same."""

    def __init__(self):
        self.uid, self.gid = os.getuid(), os.getgid()
        try:
            pw = pwd.getpwuid(self.uid)
            self.name, self.home = pw.pw_name, pw.pw_dir
        except KeyError:
            self.name, self.home = f"u{self.uid}", f"/home/u{self.uid}"
        try:
            self.group = grp.getgrgid(self.gid).gr_name
        except KeyError:
            self.group = f"g{self.gid}"


class Testbed:
    def __init__(self, client, image, directory, mount_directory, caller, log):
        self.client = client
        self.image = image
        self.directory = directory
        self.caller = caller
        self.log = log
        volumes = {"/": {"bind": "/mnt", "mode": "ro"}}
        if mount_directory:
            volumes[directory] = {"bind": directory, "mode": "rw"}
        from docker.errors import APIError, ImageNotFound

        _ensure_image(client, image)
        try:
            self.container = client.containers.run(
                image, ["sh", "-c", "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"],
                detach=True, user="0", working_dir="/", volumes=volumes,
                # The reaper removes a testbed whose womm setup is gone (pid and its start time).
                labels=taskobjects.testbed_labels(),
                name=f"womm-testbed-{os.getpid()}-{int(time.time())}", hostname="testbed",
            )
        except ImageNotFound:
            raise WommError(f"no base image {image}: pull it, or choose another") from None
        except APIError as e:
            raise WommError(f"cannot start a testbed of {image}: {e.explanation or e}") from None
        want_sudo = "yes" if caller.uid != 0 else "no"
        if want_sudo == "yes":
            self.log("preparing the testbed: your user, and sudo so that you can install packages")
        status, out = self.run_root(
            ["sh", "-c", PREPARE, "prepare", caller.name, str(caller.uid), str(caller.gid),
             caller.group, caller.home, directory, want_sudo],
        )
        if status != 0:
            raise WommError(f"cannot prepare the testbed: {out.strip().splitlines()[-1:] or status}")

    def run_root(self, command, user="0"):
        result = self.container.exec_run(command, user=user, demux=False)
        return result.exit_code, (result.output or b"").decode(errors="replace")

    @property
    def user(self):
        return f"{self.caller.uid}:{self.caller.gid}"

    def _exec_env(self):
        return {"HOME": self.caller.home, "USER": self.caller.name, "LOGNAME": self.caller.name,
                "TERM": os.environ.get("TERM", "xterm")}

    def shell(self):
        """An interactive login shell as the caller, through a real terminal; its exit status."""
        from womm import terminal

        api = self.client.api
        # PROMPT_COMMAND (bash) and ENV (sh) record the exported variables at each prompt, and
        # set a trap that records them once more when the shell exits, however it exits: the
        # first record is the baseline, the last one what the user left (`export X=1; exit`).
        record = f"[ -e {ENV_BEFORE} ] || env -0 > {ENV_BEFORE}; env -0 > {ENV_AFTER}"
        at_exit = f"trap {shlex.quote(f'env -0 > {ENV_AFTER}')} EXIT"
        rc = f"/tmp/.womm-rc-{self.caller.uid}"
        self.run_root(["sh", "-c", f"printf '%s\\n' {shlex.quote(at_exit + '; ' + record)} > {rc}; chmod 644 {rc}"])
        env = {**self._exec_env(), "PROMPT_COMMAND": f"{record}; {at_exit}", "ENV": rc}
        shell_cmd = WAIT_FOR_SIZE + "if [ -x /bin/bash ]; then exec /bin/bash --login; fi; exec /bin/sh -l"
        exec_id = api.exec_create(
            self.container.id, ["sh", "-c", shell_cmd], stdin=True, tty=True, user=self.user,
            workdir=self.directory, environment=env,
        )["Id"]
        sock = api.exec_start(exec_id, tty=True, socket=True)
        raw = getattr(sock, "_sock", sock)
        raw.setblocking(True)

        def recv():
            data = raw.recv(65536)
            return data if data else None

        def resize(columns, lines):
            try:
                api.exec_resize(exec_id, height=lines, width=columns)
            except Exception:  # noqa: BLE001 - the shell may be gone already
                pass

        terminal.relay(raw.sendall, raw.fileno(), recv, resize)
        raw.close()
        self.run_root(["rm", "-f", rc])
        return api.exec_inspect(exec_id)["ExitCode"]

    def script(self, text):
        """Run a script with sh as the caller, its output shown; its exit status."""
        import io
        import tarfile

        data = text.encode()
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo(".womm-script")
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
        self.container.put_archive("/tmp", buf.getvalue())
        record = f"env -0 > {ENV_AFTER}"
        command = f"env -0 > {ENV_BEFORE}; trap {shlex.quote(record)} EXIT; . /tmp/.womm-script"
        api = self.client.api
        exec_id = api.exec_create(
            self.container.id, ["sh", "-c", command], user=self.user, workdir=self.directory,
            environment=self._exec_env(),
        )["Id"]
        for chunk in api.exec_start(exec_id, stream=True, demux=True):
            out, err = chunk
            if out:
                os.write(2, out)  # stdout of womm setup is for what scripts read
            if err:
                os.write(2, err)
        return api.exec_inspect(exec_id)["ExitCode"]

    def exported(self):
        """{name: value} the user exported or changed, minus session noise and credentials."""
        before = self._read_env(ENV_BEFORE)
        after = self._read_env(ENV_AFTER)
        changed = {k: v for k, v in after.items() if before.get(k) != v and k not in NOT_SAVED}
        saved = {}
        for name, value in changed.items():
            if any(hint in name.upper() for hint in CREDENTIAL_HINTS):
                self.log(f"not saving {name} into the image: it looks like a credential")
                continue
            saved[name] = value
        return saved

    def _read_env(self, path):
        status, out = self.run_root(["cat", path])
        if status != 0:
            return {}
        env = {}
        for item in out.split("\0"):
            name, sep, value = item.partition("=")
            if sep and name:
                env[name] = value
        return env

    def check_runtime(self):
        status, out = self.run_root(["sh", "-c", CHECK], user=self.user)
        if status != 0 or "ok" not in out:
            raise WommError(
                "womm's pods need a POSIX shell (sh) and sleep in the image: install them "
                "(e.g. coreutils) and run womm setup again"
            )

    def remove_noise(self):
        paths = [p.format(home=self.caller.home) for p in NOISE]
        self.run_root(["rm", "-f", *paths])
        credentials = [p.format(home=h) for p in CREDENTIAL_FILES for h in dict.fromkeys((self.caller.home, "/root"))]
        # sh expands the id_* patterns; what it finds is said, then removed.
        script = 'for p in "$@"; do for f in $p; do [ -e "$f" ] && echo "$f" && rm -f "$f"; done; done; :'
        status, out = self.run_root(["sh", "-c", script, "credentials", *credentials])
        found = out.split()
        if found:
            self.log(f"not saving {', '.join(found)} into the image: they hold credentials")

    def changed(self, env):
        """True if the session changed the filesystem or the environment."""
        if env:
            return True
        entries = self.container.diff() or []
        real = [e["Path"] for e in entries if e["Kind"] != 0]
        if real:
            return True
        modified = [e["Path"] for e in entries if e["Kind"] == 0]
        if not modified:
            return False
        # A modified directory alone is a file created and removed in it (noise).
        test = "for p; do [ -d \"$p\" ] || exit 1; done"
        status, _ = self.run_root(["sh", "-c", test, "check", *modified])
        return status != 0

    def commit(self, repository, tag, env):
        changes = [f"USER {self.caller.uid}:{self.caller.gid}", f"WORKDIR {json.dumps(self.directory)}"]
        changes += [f"ENV {name}={json.dumps(value)}" for name, value in sorted(env.items())]
        return self.container.commit(repository=repository, tag=tag, changes=changes)

    def remove(self):
        try:
            self.container.remove(force=True)
        except Exception:  # noqa: BLE001 - best effort; the reaper removes leftovers
            pass


def _ensure_image(client, image):
    """The image locally, pulling it if needed."""
    from docker.errors import APIError, ImageNotFound, NotFound

    if docker_engine.exists(client, image):
        return
    repo, tag = docker_engine.split_tag(image)
    try:
        client.images.pull(repo, tag=tag)
    except (APIError, ImageNotFound, NotFound) as e:
        reason = (getattr(e, "explanation", None) or str(e)).splitlines()[0]
        raise WommError(f"cannot find the base image {image} locally nor pull it ({reason}): check its name") from None
