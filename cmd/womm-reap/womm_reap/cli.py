"""womm-reap: see the mess (status), clean it up (finish), and let cron keep it clean (reap)."""

from womm import cli
from womm.errors import run_main


def build_parser():
    parser = cli.program_parser(
        "womm-reap",
        "List the tasks womm started on the cluster, remove them, and reap orphans.",
        epilog="Called without a verb, womm-reap runs `reap` (the form cron uses).",
    )
    verbs = cli.add_verbs(parser)

    status = cli.add_verb(
        verbs, "status",
        description=(
            "List the tasks on the cluster started from this machine. STATUS is RUNNING, "
            "COMPLETE (an async task that finished and waits for `womm finish`), ORPHANED "
            "(its controller is gone, or has not renewed its heartbeat for 90 s: finish it), "
            "ENDING (its objects are being deleted), or UNKNOWN (a task with no heartbeat). "
            "HEALTH is ready pods over requested pods, then jobs done where known."
        ),
    )
    status.add_argument("-A", "--all-hosts", action="store_true", help="show every host's tasks, with a HOST column")
    status.add_argument("-o", "--output", choices=("table", "json"), default="table", help="output format")
    status.add_argument("--all-namespaces", action="store_true", help="look in every namespace")
    cli.add_kube_options(status)

    finish = cli.add_verb(
        verbs, "finish",
        description=(
            "Remove everything of the given tasks: pods, replica sets, the leader, buffered "
            "logs and records. An async task with an eager-syncback share is synced back first."
        ),
    )
    cli.complete_as(finish.add_argument("ids", nargs="+", metavar="ID", help="task id, as `womm status` shows it"),
                    "task-id")
    finish.add_argument("--force", action="store_true", help="also finish tasks of another directory or host, or still running")
    cli.add_kube_options(finish)

    reap = cli.add_verb(
        verbs, "reap",
        description=(
            "Finish this machine's ORPHANED tasks and its COMPLETE async tasks older than the TTL, "
            "and remove local leftovers (testbed containers, temporary images, stale records). "
            "Prints nothing when there is nothing to do, one line per action otherwise, and "
            "appends the same to ~/.womm/logs/reap.log. Never touches a task whose controller is alive."
        ),
    )
    reap.add_argument("--ttl", default="24h", help="age after which COMPLETE async tasks are finished (e.g. 90m, 24h, 7d; default 24h)")
    reap.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    reap.add_argument("--print-cron", action="store_true", help="print a crontab line that runs this reaper, and exit")
    reap.add_argument("--all-hosts", action="store_true",
                      help="also finish other machines' ORPHANED tasks (their heartbeat stopped) and expired ones")
    cli.add_kube_options(reap)
    return parser


def main(argv=None):
    def run(argv):
        args = cli.parse(build_parser(), argv, default_verb="reap")
        from womm_reap import commands

        return getattr(commands, args.verb)(args)

    return run_main(run, argv, prog="womm-reap")
