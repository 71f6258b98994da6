"""`womm-fs rsh [--namespace NS] [--container C] POD COMMAND...`: rsync's remote shell.

`rsync -e 'womm-fs rsh --namespace NS' ./ POD:/path/` runs rsync's server side
in the pod through the exec API and relays its stdin and stdout: no ssh, no
network path into the cluster, no credential in the pod. Like ssh, the remote
command words are joined with spaces and run by the remote shell.
"""

from womm.errors import WommError
from womm.kube import Cluster, relay_stdio


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
    return relay_stdio(stream)
