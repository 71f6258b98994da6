"""What every womm program's command line shares: verbs, the Kubernetes options, the error format;
and a program's parser as JSON, rebuilt elsewhere (`womm completion` completes every program's
verbs without importing one: see parser_json and rebuild).
"""

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


# The hidden verb every program has: its parser as JSON, for `womm completion`.
PARSER_JSON = "parser-json"


def add_verbs(parser):
    verbs = parser.add_subparsers(dest="verb", metavar="VERB", title="verbs", parser_class=Parser)
    verbs.required = True
    add_hidden_verb(verbs, PARSER_JSON)
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
    args = parser.parse_args(argv)
    if getattr(args, "verb", None) == PARSER_JSON:
        import json

        print(json.dumps(parser_json(parser)))
        sys.exit(0)  # as argparse's own --version does
    return args


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


# ---------------------------------------------------------------- a parser as JSON, and back

def complete_as(action, kind):
    """Mark an argument as completed with `kind` (e.g. "task-id"): what `womm completion` gives the shell."""
    action.womm_complete = kind
    return action


def parser_json(parser):
    """What a parser accepts, as JSON-able data: its options and positionals (option strings, nargs,
    choices, metavar, help) and its visible verbs, recursively. Hidden ones are left out."""
    node = {"prog": parser.prog, "description": parser.description, "arguments": [], "verbs": {}}
    for action in parser._actions:  # noqa: SLF001 - argparse has no public list
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            shown = {a.dest: a.help for a in action._choices_actions}  # noqa: SLF001 - the listed verbs
            for name, sub in action.choices.items():
                if name in shown:
                    node["verbs"][name] = {"help": shown[name], **parser_json(sub)}
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if action.nargs == 0:
            kind = "count" if isinstance(action, argparse._CountAction) else "flag"  # noqa: SLF001
        else:
            kind = "append" if isinstance(action, argparse._AppendAction) else "store"  # noqa: SLF001
        node["arguments"].append({
            "options": list(action.option_strings), "dest": action.dest, "action": kind,
            "nargs": action.nargs, "choices": list(action.choices) if action.choices else None,
            "metavar": action.metavar, "help": action.help, "required": action.required,
            "complete": getattr(action, "womm_complete", None),
        })
    return node


def rebuild(parser, node, completers=None):
    """Add to parser what parser_json described: arguments that parse (and complete) as the
    original's did, without their types, defaults or effects. completers: {kind: what shtab takes
    as an argument's `complete`}, for the arguments marked with complete_as()."""
    completers = completers or {}
    for arg in node.get("arguments") or []:
        kwargs = {"help": (arg.get("help") or "").replace("%", "%%") or None}
        metavar = arg.get("metavar")
        if arg["action"] in ("flag", "count"):
            kwargs["action"] = "store_true" if arg["action"] == "flag" else "count"
        else:
            kwargs["action"] = arg["action"]
            if arg.get("nargs") is not None:
                kwargs["nargs"] = arg["nargs"]
            if arg.get("choices"):
                kwargs["choices"] = arg["choices"]
            if metavar is not None:
                kwargs["metavar"] = tuple(metavar) if isinstance(metavar, list) else metavar
        if arg["options"]:
            action = parser.add_argument(*arg["options"], dest=arg["dest"], **kwargs)
        else:
            action = parser.add_argument(arg["dest"], **kwargs)
        if arg.get("complete") in completers:
            action.complete = completers[arg["complete"]]
    verbs = node.get("verbs") or {}
    if verbs:
        sub = parser.add_subparsers(dest="verb", metavar="VERB")
        for name, child in verbs.items():
            rebuild(sub.add_parser(name, help=child.get("help"), description=child.get("description"),
                                   add_help=False), child, completers)
    return parser
