"""womm-fs: prepare a namespace (cluster-setup), build the share server's images, and the shares."""

import argparse

from womm import cli
from womm.errors import run_main


def build_parser():
    parser = cli.program_parser(
        "womm-fs",
        "Prepare a namespace for womm and share directories with the cluster. A directory "
        "is shared lazily (pods see it live, through sshfs over the Kubernetes API), eagerly "
        "(rsync'ed to the share server before jobs start, optionally synced back after the "
        "last job), or not at all, as chosen in `womm setup`.",
    )
    verbs = cli.add_verbs(parser)

    setup = cli.add_verb(
        verbs, "cluster-setup",
        description=(
            "Print the objects that prepare a namespace for womm: the share server (a "
            "Deployment and a ClusterIP Service), and a ServiceAccount, Role and RoleBinding "
            "with only what the in-cluster leader of --async tasks needs. Pipe it to "
            "`kubectl create -f -`, or use --apply."
        ),
    )
    setup.add_argument("--helper-image", metavar="IMAGE",
                       help="womm's helper image: the share server, the pods' agents, --async leaders "
                            "(default: the one `womm build-images` made)")
    setup.add_argument("--pull-secret", metavar="SECRET",
                       help="the Secret every pod womm makes pulls the helper image with (a private registry); "
                            "recorded in the namespace's womm-config")
    setup.add_argument("--apply", action="store_true", help="create or update the objects with the API instead of printing them")
    setup.add_argument("--no-wait", action="store_true",
                       help="with --apply: do not wait (up to 3 minutes) until the share server runs")
    setup.add_argument("--reaper", action="store_true",
                       help="also an in-cluster reaper: a CronJob that finishes, every 15 minutes, the tasks whose "
                            "heartbeat stopped (their laptop went away) and COMPLETE ones older than a day")
    setup.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="format of the printed objects")
    cli.add_kube_options(setup)

    build = cli.add_verb(
        verbs, "build-images",
        description=(
            "Build womm's helper image (the share server, each worker pod's agent, --async "
            "leaders) from womm's images/ directory on top of a Debian-based base image, push it "
            "under your registry prefix, remember it, and print the cluster-setup objects that use it."
        ),
    )
    build.add_argument("--prefix", help="registry prefix (default: the one `womm setup` saved)")
    build.add_argument("--base-image", metavar="IMAGE", help="Debian-based image to build on (default debian:bookworm)")
    build.add_argument("--no-push", action="store_true", help="build and tag only")
    cli.add_kube_options(build)

    share = cli.add_verb(
        verbs, "share",
        description="Show this directory's share, or (eager shares) send what changed to the share server now.",
    )
    share.add_argument("action", nargs="?", choices=("status", "sync"), default="status")
    share.add_argument("-o", "--output", choices=("table", "json"), default="table")
    cli.add_kube_options(share)

    doctor = cli.add_verb(
        verbs, "doctor",
        description=(
            "Check everything a run needs, for this directory and the cluster: GNU parallel and rsync "
            "here, the lazy share's confinement, the Docker engine (for womm setup), the kubeconfig and "
            "the API server, womm's permissions in the namespace, the share server, the helper image, "
            "privileged pods and FUSE (lazy shares), and the directory's image in its registry. One line "
            "per check: `ok`, `FAIL` with what to do, or `skip` where it does not apply. Exits 0 when "
            "nothing failed, 1 otherwise; no check waits more than a few seconds."
        ),
    )
    doctor.add_argument("-o", "--output", choices=("text", "json"), default="text",
                        help="json: a list of {check, ok, detail, fix} (ok is null for a skipped check)")
    cli.add_kube_options(doctor)

    # rsync's remote shell: `rsync -e 'womm-fs rsh' ...` runs rsync's server side in a pod
    # through the Kubernetes API (no ssh, no credentials in the pod). Not for humans.
    rsh = cli.add_hidden_verb(verbs, "rsh")
    rsh.add_argument("--container")
    cli.add_kube_options(rsh)
    rsh.add_argument("target", help="the pod")
    rsh.add_argument("remote", nargs=argparse.REMAINDER)

    # A lazy share's SFTP server: sshfs in a pod talks to it; it reaches nothing outside DIR.
    serve = cli.add_hidden_verb(verbs, "serve-sftp")
    serve.add_argument("--listen", metavar="PORT", type=int, help="serve over TCP (the share cache), not stdin")
    serve.add_argument("--token-file", metavar="FILE", help="with --listen: the token each connection begins with")
    serve.add_argument("--max-connections", metavar="N", type=int,
                       help="with --listen: connections served at once, at most (256)")
    serve.add_argument("--exclude", metavar="PATH", action="append", help="never serve PATH (at any depth)")
    serve.add_argument("--protect", metavar="PATH", action="append",
                       help="serve PATH (at any depth) for reading only")
    serve.add_argument("directory", help="the shared directory")
    # A worker's share container: the share cache, reached with the task's token, as sshfs's stdin and stdout.
    conn = cli.add_hidden_verb(verbs, "sftp-connect")
    conn.add_argument("host")
    conn.add_argument("port", type=int)
    conn.add_argument("token_file")
    conn.add_argument("command", nargs=argparse.REMAINDER, help="run on the connection (sshfs -o passive ...)")
    return parser


def main(argv=None):
    def run(argv):
        args = cli.parse(build_parser(), argv)
        if args.verb == "cluster-setup":
            from womm_fs import cluster_setup

            return cluster_setup.main(args)
        if args.verb == "build-images":
            from womm_fs import images

            return images.main(args)
        if args.verb == "doctor":
            from womm_fs import doctor

            return doctor.main(args)
        if args.verb == "rsh":
            from womm_fs import rsh

            return rsh.main(args)
        if args.verb in ("serve-sftp", "sftp-connect"):
            from womm_fs import serve_sftp

            return serve_sftp.main(args) if args.verb == "serve-sftp" else serve_sftp.connect(args)
        from womm_fs import share_cmd

        return share_cmd.main(args)

    return run_main(run, argv, prog="womm-fs")
