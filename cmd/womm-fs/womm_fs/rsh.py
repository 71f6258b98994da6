"""`womm-fs rsh [--namespace NS] [--container C] POD COMMAND...`: rsync's remote shell.

`rsync -e 'womm-fs rsh --namespace NS' ./ POD:/path/` runs rsync's server side
in the pod through the exec API and relays its stdin and stdout: no ssh, no
network path into the cluster, no credential in the pod. Like ssh, the remote
command words are joined with spaces and run by the remote shell.
"""

import os
import sys
import threading

from womm.errors import WommError
from womm.kube import Cluster


def main(args):
    target = args.target
    remote = list(args.remote)
    # rsync may pass ssh's options (-l user) before the host.
    if target == "-l" and len(remote) >= 2:
        target, remote = remote[1], remote[2:]
    if not remote:
        raise WommError("rsh: no remote command")
    cluster = Cluster(args.context, args.namespace)
    stream = cluster.exec_stream(target, ["sh", "-c", " ".join(remote)], container=args.container)
    return relay(stream)


def relay(stream):
    """Join this process's stdin/stdout/stderr to the stream; the remote exit status."""

    def pump_stdin():
        while True:
            try:
                data = os.read(0, 65536)
            except OSError:
                data = b""
            if not data:
                try:
                    stream.close_stdin()
                except Exception:  # noqa: BLE001 - v4 streams cannot half-close
                    pass
                return
            try:
                stream.send(data)
            except OSError:
                return

    threading.Thread(target=pump_stdin, daemon=True).start()
    out = {1: sys.stdout.buffer, 2: sys.stderr.buffer}
    while True:
        item = stream.recv()
        if item is None:
            break
        channel, data = item
        if channel in out:
            out[channel].write(data)
            out[channel].flush()
    status = stream.exit_status()
    stream.close()
    return 255 if status is None else status
