"""womm-setup: the "works on my machine" testbed that becomes the pods' image."""

import argparse

from womm import cli
from womm.errors import run_main
from womm.shares import KINDS as SHARE_KINDS


def build_parser():
    parser = cli.program_parser(
        "womm-setup",
        "Set up this directory for womm: choose how it is shared with the cluster, make "
        "your program work in a local testbed shell, and save that testbed as the image "
        "the pods run.",
        epilog="Called without a verb, womm-setup runs `setup`.",
    )
    verbs = cli.add_verbs(parser)
    setup = cli.add_verb(
        verbs, "setup",
        description=(
            "Asks how to share this directory, which base image to start from and (once) "
            "which registry prefix to push to, then opens a testbed shell: a container of the "
            "base image with your user, this directory at the same path, and the host's / at "
            "/mnt. What you install and the variables you export there become the image of "
            "every pod. Every question has a flag; with all of them given it asks nothing."
        ),
    )
    setup.add_argument("--share", choices=SHARE_KINDS, help="how the directory reaches the pods")
    setup.add_argument("--base-image", metavar="IMAGE", help="image to start from (default ubuntu:22.04)")
    setup.add_argument("--prefix", help="registry prefix to push images to, e.g. registry.example.com/team/")
    setup.add_argument("--pull-secret", metavar="NAME", help="image pull secret the pods use ('' for none)")
    setup.add_argument("--script", metavar="FILE", help="run FILE with sh in the testbed instead of a shell ('-': stdin)")
    setup.add_argument("--edit-image", action="store_true", help="open a testbed on the current image to change it")
    setup.add_argument("--image", help="use this existing image (e.g. after fixing a failed push) instead of a testbed")
    setup.add_argument("-y", "--yes", action="store_true", help="answer yes: it works, push it")
    cli.add_kube_options(setup)
    # `womm shell --local`: the testbed on the current image, saving changes only if asked.
    setup.add_argument("--local-shell", action="store_true", help=argparse.SUPPRESS)
    setup.add_argument("--run", metavar="COMMAND", help=argparse.SUPPRESS)
    cli.add_verb(
        verbs, "clear-prefix",
        description="Forget the registry prefix; the next `womm setup` asks again.",
    )
    return parser


def main(argv=None):
    def run(argv):
        args = cli.parse(build_parser(), argv, default_verb="setup")
        from womm_setup import setup

        if args.verb == "clear-prefix":
            return setup.clear_prefix(args)
        return setup.setup(args)

    return run_main(run, argv, prog="womm-setup")
