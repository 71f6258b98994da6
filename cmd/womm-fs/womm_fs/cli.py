"""womm-fs: prepare a namespace (cluster-setup), build the share server's images, and the shares."""

import argparse

from womm import cli
from womm.errors import run_main

VERBS = ("cluster-setup", "build-images", "share", "rsh", "serve-sftp")


def build_parser():
    parser = cli.program_parser(
        "womm-fs",
        "Prepare a namespace for womm and share directories with the cluster. A directory "
        "is shared lazily (pods see it live, through sshfs over the Kubernetes API), eagerly "
        "(rsync'ed to the share server before jobs start, optionally synced back after the "
        "last job), or not at all, as chosen in `womm setup`.",
    )
    verbs = cli.add_verbs(parser)

    setup = verbs.add_parser(
        "cluster-setup", help="print (or --apply) what a namespace needs for womm",
        description=(
            "Print the objects that prepare a namespace for womm: the share server (a "
            "Deployment and a ClusterIP Service), and a ServiceAccount, Role and RoleBinding "
            "with only what the in-cluster leader of --async tasks needs. Pipe it to "
            "`kubectl create -f -`, or use --apply."
        ),
    )
    setup.add_argument("--share-image", metavar="IMAGE", help="share server image (default: from `womm build-images`)")
    setup.add_argument("--leader-image", metavar="IMAGE", help="leader image for --async tasks (default: from `womm build-images`)")
    setup.add_argument("--apply", action="store_true", help="create or update the objects with the API instead of printing them")
    setup.add_argument("-o", "--output", choices=("yaml", "json"), default="yaml", help="format of the printed objects")
    cli.add_kube_options(setup)

    build = verbs.add_parser(
        "build-images", help="build and push the share server and leader images",
        description=(
            "Build the share server and leader images from womm's images/ directory on top of "
            "a Debian-based base image, push them under your registry prefix, remember them, "
            "and print the cluster-setup objects that point at them."
        ),
    )
    build.add_argument("--prefix", help="registry prefix (default: the one `womm setup` saved)")
    build.add_argument("--base-image", metavar="IMAGE", help="Debian-based image to build on (default debian:bookworm)")
    build.add_argument("--no-push", action="store_true", help="build and tag only")
    cli.add_kube_options(build)

    share = verbs.add_parser(
        "share", help="show or sync this directory's share",
        description="Show this directory's share, or (eager shares) send what changed to the share server now.",
    )
    share.add_argument("action", nargs="?", choices=("status", "sync"), default="status")
    share.add_argument("-o", "--output", choices=("table", "json"), default="table")
    cli.add_kube_options(share)

    # rsync's remote shell: `rsync -e 'womm-fs rsh' ...` runs rsync's server side in a pod
    # through the Kubernetes API (no ssh, no credentials in the pod). Not for humans.
    rsh = cli.add_hidden_verb(verbs, "rsh")
    rsh.add_argument("--container")
    cli.add_kube_options(rsh)
    rsh.add_argument("target", help="the pod")
    rsh.add_argument("remote", nargs=argparse.REMAINDER)

    # A lazy share's SFTP server: sshfs in a pod talks to it; it reaches nothing outside DIR.
    serve = cli.add_hidden_verb(verbs, "serve-sftp")
    serve.add_argument("directory", help="the shared directory")
    return parser


def main(argv=None):
    def run(argv):
        args = cli.parse(build_parser(), argv, VERBS)
        if args.verb == "cluster-setup":
            from womm_fs import cluster_setup

            return cluster_setup.main(args)
        if args.verb == "build-images":
            from womm_fs import images

            return images.main(args)
        if args.verb == "rsh":
            from womm_fs import rsh

            return rsh.main(args)
        if args.verb == "serve-sftp":
            from womm_fs import serve_sftp

            return serve_sftp.main(args)
        from womm_fs import share_cmd

        return share_cmd.main(args)

    return run_main(run, argv, prog="womm-fs")
