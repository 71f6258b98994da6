"""womm-run: GNU parallel with Kubernetes pods as job slots; womm shell; womm logs."""

import argparse
import re

from womm import cli, exitcodes, tasks
from womm.errors import UsageError, run_main

PARALLEL_USAGE = "womm parallel --kube-pods N [womm options] [GNU parallel options] -- command [args] [::: inputs]"


POD_DEFAULTS = {"kube-cpu": tasks.CPU, "kube-mem": tasks.MEM}
QUANTITY = {  # what Kubernetes accepts for each, in the forms people write
    "kube-cpu": (re.compile(r"[0-9]+(\.[0-9]+)?m?"), "a number of CPUs, e.g. 2, 0.5 or 250m"),
    "kube-mem": (re.compile(r"[0-9]+(\.[0-9]+)?([KMGTPE]i?|k)?"), "an amount of memory, e.g. 512Mi or 2Gi"),
}


def add_pod_options(parser):
    group = parser.add_argument_group("pods (defaults from WOMM_KUBE_CPU, WOMM_KUBE_MEM or ~/.womm/settings.json)")
    group.add_argument("--kube-cpu", metavar="N", help=f"CPUs reserved (and the limit) per pod (default {tasks.CPU})")
    group.add_argument("--kube-mem", metavar="M", help=f"memory reserved (and the limit) per pod (default {tasks.MEM})")
    group.add_argument(
        "--kube-run-as", metavar="UID[:GID]",
        help="run the pods' containers as this user, not as the image's (default: the image's; where the namespace's "
             "Pod Security wants no root, yours, or 1000 if you are root); the share's files are this user's",
    )
    group.add_argument(
        "--kube-pending-timeout", metavar="DURATION", type=cli.duration, default=tasks.PENDING_TIMEOUT,
        help="give up, with the scheduler's or kubelet's reason, when no pod has started within DURATION "
             f"(e.g. 90s, 10m; default {tasks.PENDING_TIMEOUT:g} s); once some have, go on with those",
    )
    return group


def resolve_pod_options(args):
    """--kube-cpu and --kube-mem, else their settings, else the defaults; checked here, not by the API."""
    from womm.settings import resolve

    for name, default in POD_DEFAULTS.items():
        attr = name.replace("-", "_")
        given = getattr(args, attr)
        value = str(resolve(name, given, default))
        pattern, what = QUANTITY[name]
        if not pattern.fullmatch(value):
            source = f"--{name}" if given is not None else f"{name} (from WOMM_{attr.upper()} or settings.json)"
            raise UsageError(f"{source} {value}: not {what}")
        setattr(args, attr, value)
    run_as = resolve("kube-run-as", args.kube_run_as)
    if run_as is not None and not re.fullmatch(r"[1-9][0-9]*(:[0-9]+)?", str(run_as)):
        source = "--kube-run-as" if args.kube_run_as is not None else "kube-run-as (from WOMM_KUBE_RUN_AS or settings.json)"
        raise UsageError(f"{source} {run_as}: not UID or UID:GID of a user that is not root (e.g. 1000 or 1000:1000)")
    args.kube_run_as = str(run_as) if run_as is not None else None
    return args


def add_parallel_options(parser):
    group = parser.add_argument_group("womm options (every other option goes to GNU parallel)")
    group.add_argument("--kube-pods", metavar="N", type=_positive, help="spin up N pods to dispatch jobs to (required)")
    group.add_argument("--local-procs", metavar="N", type=_natural, default=0, help="in addition, run N job slots locally, in this directory")
    group.add_argument("--procs-per-pod", metavar="N", type=_positive, default=1, help="job slots per pod (default 1)")
    group.add_argument(
        "--kube-retries", metavar="N", type=_natural, default=tasks.RETRIES,
        help="run a job lost with its pod or stream (deleted, evicted, OOM-killed) again up to N times, "
             f"then fail it as a job (default {tasks.RETRIES})",
    )
    group.add_argument(
        "--async", dest="async_", action="store_true",
        help="run the coordinator in the cluster: the task survives this client; follow it with `womm logs`",
    )
    group.add_argument("--citation", action="store_true", help="promise GNU parallel's authors a citation (asks you to type 'will cite')")
    add_pod_options(parser)
    # No -n here: GNU parallel's -n is --max-args.
    cli.add_kube_options(parser, short=False)


def build_parser():
    parser = cli.program_parser(
        "womm-run",
        "Run commands on pods of the cluster: many jobs through GNU parallel, or one shell.",
        epilog="Called without a verb, womm-run runs `parallel`.",
    )
    verbs = cli.add_verbs(parser)
    description = (
        "Use it as GNU parallel. womm creates --kube-pods pods from the image of `womm setup`, "
        "with this directory shared as it chose, gives GNU parallel each pod's job slots as soon "
        "as the pod is ready, and streams the jobs' output exactly as GNU parallel prints it "
        "locally. Its exit status is GNU parallel's: the number of failed jobs (101 for more "
        "than 100), 255 for other errors. Everything the task created is deleted when it ends, "
        "is interrupted, or fails. Options womm does not know go to GNU parallel unchanged; "
        "the command and its inputs follow `--`."
    )
    for name in ("parallel", "run"):
        add_parallel_options(cli.add_verb(verbs, name, usage=PARALLEL_USAGE, description=description))
    shell = cli.add_verb(
        verbs, "shell",
        usage="womm shell [options] [-- command [args]]",
        description=(
            "Open a shell in one pod with this directory's image and share, through a real "
            "terminal; with a command, run it there and return its exit status. With --local, "
            "run the image locally with this directory mounted, and offer to save what changed "
            "into the image."
        ),
    )
    shell.add_argument("--local", action="store_true", help="run the image on this machine instead of a pod")
    add_pod_options(shell)
    cli.add_kube_options(shell)
    shell.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    logs = cli.add_verb(
        verbs, "logs",
        description="Print the output of an --async task so far, then follow it until the task ends.",
    )
    cli.complete_as(logs.add_argument("id", metavar="ID", help="task id, as `womm parallel --async` and `womm status` "
                                                               "print it"), "task-id")
    logs.add_argument("--no-follow", action="store_true", help="print what there is and stop")
    cli.add_kube_options(logs)
    # The in-cluster coordinator of --async tasks; not for humans.
    leader = cli.add_hidden_verb(verbs, "leader")
    leader.add_argument("task", help="the file of the task record, as JSON")
    return parser


def _positive(text):
    value = _natural(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _natural(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def parse_parallel(parser, argv):
    """womm's options, and GNU parallel's command line read as GNU parallel reads it (womm_run.parallel_options).

    womm's options stand where GNU parallel reads options; everything else is GNU parallel's,
    in its order (args.parsed; args.parallel_argv is what GNU parallel is given). Without a
    command, GNU parallel runs each input as a command, as here.
    """
    from womm_run import parallel_options

    takes_value = {"-h": False}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public table
        for opt in action.option_strings:
            if opt.startswith("--"):
                takes_value[opt] = action.nargs != 0
    parsed = parallel_options.parse(argv, extra=takes_value)
    args = parser.parse_args(list(parsed.extra))
    args.parsed = parsed
    args.parallel_argv = list(parsed.argv)
    if args.citation:
        return args
    if args.kube_pods is None:
        raise UsageError("--kube-pods N is required: how many pods to run the jobs on")
    parallel_options.check(parsed)
    return resolve_pod_options(args)


def main(argv=None):
    def run(argv):
        import sys

        argv = list(sys.argv[1:] if argv is None else argv)
        parser = build_parser()
        if not argv or argv[0] not in cli.verb_parsers(parser) and argv[0] not in ("-h", "--help", "--version"):
            argv.insert(0, "parallel")
        if argv[0] in ("parallel", "run"):
            args = parse_parallel(cli.verb_parsers(parser)[argv[0]], argv[1:])
            if args.async_ and not args.citation:
                from womm_run import leader

                return leader.start(args)
            from womm_run import parallel

            return parallel.main(args)
        args = cli.parse(parser, argv)
        if args.verb == "shell":
            from womm_run import shell

            resolve_pod_options(args)

            return shell.main(args)
        if args.verb == "logs":
            from womm_run import logs

            return logs.main(args)
        from womm_run import leader

        return leader.main(args)

    return run_main(run, argv, prog="womm-run", error_exit=exitcodes.PARALLEL_OTHER_ERROR)
