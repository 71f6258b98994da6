"""What every womm program's command line shares: verbs, the Kubernetes options, the error format."""

import argparse
import sys

from womm import __version__
from womm.errors import UsageError


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors go through womm's error format and exit 2."""

    def error(self, message):
        self.print_usage(sys.stderr)
        raise UsageError(message)


def program_parser(prog, description, epilog=None):
    parser = Parser(prog=prog, description=description, epilog=epilog)
    parser.add_argument("--version", action="version", version=f"{prog} (womm) {__version__}")
    return parser


def add_verbs(parser):
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", title="verbs", parser_class=Parser)
    verbs.required = True
    return verbs


def add_verb(verbs, name, **kwargs):
    """A built-in verb's parser; its one-line help comes from the verb table (womm.programs)."""
    from womm.programs import VERBS

    return verbs.add_parser(name, help=VERBS[name].summary, **kwargs)


def add_kube_options(parser, short=True):
    group = parser.add_argument_group("cluster")
    group.add_argument(
        "--context", help="kubeconfig context to use (default: the current context)"
    )
    group.add_argument(
        *(("-n", "--namespace") if short else ("--namespace",)),
        help="namespace to use (default: the one womm setup chose here, else the context's)",
    )
    return group


def verb_parsers(parser):
    """{verb: its parser} of a program's parser (hidden verbs included)."""
    return parser._subparsers._group_actions[0].choices  # noqa: SLF001 - argparse has no public accessor


def parse(parser, argv, default_verb=None):
    """Parse argv; a program called directly without a verb runs `default_verb`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    own = set(verb_parsers(parser)) | {"-h", "--help", "--version"}
    if default_verb and (not argv or argv[0] not in own):
        argv.insert(0, default_verb)
    return parser.parse_args(argv)


def add_hidden_verb(verbs, name):
    """A verb the programs call each other with; parsed like any other, listed nowhere."""
    parser = verbs.add_parser(name)
    # argparse prints help=SUPPRESS subcommands as "==SUPPRESS==": drop its listing instead.
    verbs._choices_actions = [a for a in verbs._choices_actions if a.dest != name]  # noqa: SLF001
    return parser


def duration(text):
    """Seconds of a duration as people write it: 90, 90s, 20m, 24h, 7d (an argparse type)."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1]) * units[text[-1]] if text and text[-1] in units else float(text)
    except (ValueError, IndexError):
        value = -1
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 90s, 20m, 24h, 7d)")
    return value
