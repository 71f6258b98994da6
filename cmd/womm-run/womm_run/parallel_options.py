"""GNU parallel's command line, read exactly as GNU parallel (20221122) reads it.

GNU parallel reads its options with Perl's Getopt::Long, configured with
bundling and require_order, from three places in turn: the profile files
(`-J NAME`, or the default config files), then $PARALLEL, then the command
line. The rules it follows, and that this module follows:

- `-kj4` is a bundle of one-letter options; a letter that takes a value takes
  the rest of the bundle (`4`) or, at its end, the next word (whatever it is:
  `--tagstring -x` sets the tag string to `-x`). An integer or real value in a
  bundle takes only its digits and the rest is a bundle again (`-l2k`).
- Long options start with `--` (or `+`), take `--name=value` or `--name value`,
  ignore case, and may be abbreviated to a unique prefix of any of their names
  (`--ungr`); an exact name wins over longer ones (`--S` is -s, --max-chars).
  A prefix of several options is an error (`--sshl`: --sshlogin or
  --sshloginfile). A single dash is always a bundle: `-jobs` is `-j obs`.
- An optional value (-i, -e, -l) is taken from the next word unless that word
  looks like an option or is `--`; -l only takes a number.
- Options end at `--` (dropped), at `-`, or at the first word that is not an
  option; everything after is the command, then `:::`/`::::`/`:::+`/`::::+`
  and their inputs. A profile's or $PARALLEL's words after its options go
  before the command line's (a profile saying `nice` prefixes every command).
- With POSIXLY_CORRECT in the environment there are no abbreviations and `+`
  starts no option.

This module knows no Kubernetes; it runs once per `womm parallel`.
"""

import os
import re
from dataclasses import dataclass

from womm.errors import UsageError

COMMAND_LINE = "command line"

# GNU parallel's options: every name of an option (the first is GNU parallel's own
# name for it), then what it takes:
#   -    nothing               =s   a value             :s   an optional value
#   =i   an integer            =f   a real number       :f   an optional real number
#   =s%  a NAME=VALUE pair
_TABLE = """
debug D                                                    =s
xargs                                                      -
m                                                          -
X                                                          -
v                                                          -
sql                                                        =s
sql-master sqlmaster                                       =s
sql-worker sqlworker                                       =s
sql-and-worker sqlandworker                                =s
joblog jl                                                  =s
results result res                                         =s
resume                                                     -
resume-failed resumefailed                                 -
retry-failed retryfailed                                   -
silent                                                     -
keep-order keeporder k                                     -
no-keep-order nokeeporder nok no-k                         -
group                                                      -
g                                                          -
ungroup u                                                  -
latest-line latestline ll                                  -
line-buffer line-buffered linebuffer linebuffered lb       -
tmux                                                       -
tmux-pane tmuxpane                                         -
null 0                                                     -
quote q                                                    -
parens                                                     =s
rpl                                                        =s
plus                                                       -
I                                                          =s
extensionreplace er                                        =s
U                                                          =s
basenamereplace bnr                                        =s
dirnamereplace dnr                                         =s
basenameextensionreplace bner                              =s
seqreplace                                                 =s
slotreplace                                                =s
jobs j                                                     =s
delay                                                      =s
ssh-delay sshdelay                                         =f
load                                                       =s
noswap                                                     -
max-line-length-allowed maxlinelengthallowed               -
number-of-cpus numberofcpus                                -
number-of-sockets numberofsockets                          -
number-of-cores numberofcores                              -
number-of-threads numberofthreads                          -
use-sockets-instead-of-threads usesocketsinsteadofthreads  -
use-cores-instead-of-threads usecoresinsteadofthreads      -
use-cpus-instead-of-cores usecpusinsteadofcores            -
shell-quote shellquote shell_quote                         -
nice                                                       =i
tag                                                        -
tag-string tagstring                                       =s
ctag                                                       -
ctag-string ctagstring                                     =s
color colour                                               -
color-failed colour-failed colorfailed colourfailed color-fail colour-fail colorfail colourfail cf  -
onall                                                      -
nonall                                                     -
filter-hosts filterhosts filter-host                       -
sshlogin S                                                 =s
sshloginfile slf                                           =s
controlmaster M                                            -
ssh                                                        =s
transfer-file transferfile transfer-files transferfiles tf =s
return                                                     =s
trc                                                        =s
transfer                                                   -
cleanup                                                    -
basefile bf                                                =s
template tmpl                                              =s%
B                                                          =s
ctrl-c ctrlc                                               -
no-ctrl-c no-ctrlc noctrlc                                 -
work-dir workdir wd                                        =s
W                                                          =s
rsync-opts rsyncopts                                       =s
tmpdir tempdir                                             =s
use-compress-program compress-program usecompressprogram compressprogram          =s
use-decompress-program decompress-program usedecompressprogram decompressprogram  =s
compress                                                   -
open-tty o                                                 -
tty                                                        -
T                                                          -
H                                                          =i
dry-run dryrun dr                                          -
progress                                                   -
eta                                                        -
bar                                                        -
total-jobs totaljobs total                                 =s
shuf                                                       -
arg-sep argsep                                             =s
arg-file-sep argfilesep                                    =s
trim                                                       =s
env                                                        =s
recordenv record-env                                       -
session                                                    -
plain                                                      -
profile J                                                  =s
tollef                                                     -
gnu                                                        -
link xapply                                                -
linkinputsource xapplyinputsource                          =i
will-cite willcite nn nonotice no-notice                   -
halt-on-error haltonerror halt                             =s
limit                                                      =s
memfree                                                    =s
memsuspend                                                 =s
retries                                                    =s
timeout                                                    =s
term-seq termseq                                           =s
max-procs maxprocs P                                       =s
delimiter d                                                =s
max-chars maxchars s                                       =s
arg-file argfile a                                         =s
no-run-if-empty norunifempty r                             -
replace i                                                  :s
E                                                          =s
eof e                                                      :s
process-slot-var processslotvar                            =s
max-args maxargs n                                         =s
max-replace-args maxreplaceargs N                          =s
col-sep colsep C                                           =s
csv                                                        -
help h                                                     -
L                                                          =s
max-lines maxlines l                                       :f
interactive p                                              -
verbose t                                                  -
version V                                                  -
min-version minversion                                     =i
show-limits showlimits                                     -
exit x                                                     -
semaphore                                                  -
semaphore-timeout semaphoretimeout st                      =s
semaphore-name semaphorename id                            =s
fg                                                         -
bg                                                         -
wait                                                       -
shebang hashbang                                           -
_pipe-means-argfiles                                       -
Y                                                          -
skip-first-line skipfirstline                              -
bug                                                        -
pipe spreadstdin                                           -
round-robin roundrobin round                               -
recstart                                                   =s
recend                                                     =s
regexp regex                                               -
remove-rec-sep removerecsep rrs                            -
output-as-files outputasfiles files                        -
block-size blocksize block                                 =s
block-timeout blocktimeout bt                              =s
header                                                     =s
cat                                                        -
fifo                                                       -
pipe-part pipepart                                         -
tee                                                        -
shard                                                      =s
bin                                                        =s
group-by groupby                                           =s
hgrp hostgrp hostgroup hostgroups                          -
embed                                                      -
filter                                                     =s
_parset                                                    =s
shell-completion shellcompletion                           =s
_test                                                      =s
"""


@dataclass(frozen=True)
class _Spec:
    name: str  # GNU parallel's name for the option: the first of its names
    kind: str  # "-", "=s", ":s", "=i", "=f", ":f" or "=s%"
    names: tuple


def _read_table(text):
    specs = {}
    for line in text.strip().splitlines():
        *names, kind = line.split()
        spec = _Spec(names[0], kind, tuple(names))
        for name in names:
            # Getopt::Long (bundling, ignore_case): long names match in any case, one-letter names exactly.
            specs[name if len(name) == 1 else name.lower()] = spec
    return specs


_SPECS = _read_table(_TABLE)
_NAMES = sorted(_SPECS)  # the order Getopt::Long lists an ambiguous abbreviation's candidates in

_INT = r"[-+]?_*[0-9][0-9_]*"
_REAL = r"[-+]?(?=[0-9.])[0-9_]*(?:\.[0-9_]+)?(?:[eE][-+]?[0-9_]+)?"
_END = r"(?=\n?\Z)"  # Perl's $: the end, or before a final newline
_WHOLE = {"i": re.compile(_INT + _END, re.S | re.I), "f": re.compile(_REAL + _END, re.S)}
_LEADING = {"i": re.compile(f"({_INT})(.*)", re.S | re.I), "f": re.compile(f"({_REAL})(.*)", re.S)}
_WHAT = {"i": "number expected", "f": "real number expected"}

# What womm decides itself, or cannot do (womm_run.parallel gives the same reasons).
_SLOTS = "womm sets the job slots: --kube-pods x --procs-per-pod + --local-procs"
REFUSED = {
    "jobs": _SLOTS,
    "max-procs": _SLOTS,
    "sshlogin": "womm's job slots are the pods; --sshlogin does not mix with them",
    "sshloginfile": "womm's job slots are the pods; --sshloginfile does not mix with them",
}
# womm gives GNU parallel its own -j on the command line, which GNU parallel reads after
# the profiles and $PARALLEL: a -j there is overridden, not a problem.
_COMMAND_LINE_ONLY = {"jobs", "max-procs"}
# Options that turn on --pipe (unless --pipepart is given).
_IMPLY_PIPE = ("cat", "fifo", "group-by")


def full_name(name):
    """How to name an option in a message: `-j (--jobs)`, `--pipe`, `-I`."""
    spec = _SPECS[_canonical(name)]
    long = [n for n in spec.names if len(n) > 1]
    short = [n for n in spec.names if len(n) == 1]
    if not long:
        return "-" + short[0]
    return f"-{short[0]} (--{long[0]})" if short else "--" + long[0]


def _canonical(name):
    spec = _SPECS.get(name) or _SPECS.get(name.lower())
    if spec is None:
        raise KeyError(f"GNU parallel has no option {name!r}")
    return spec.name


@dataclass(frozen=True)
class Option:
    """One option as GNU parallel read it."""

    name: str  # GNU parallel's name for it: "jobs", "keep-order", "I"
    value: str | None  # None: it takes no value
    given: str  # the word it came from, as written: "-kj4", "--jo", "--env=A"
    source: str = COMMAND_LINE  # or "$PARALLEL", "$PARALLEL_CSH", a profile's path

    def words(self):
        """The option spelled in full, as words GNU parallel reads back the same way."""
        kind = _SPECS[self.name].kind
        flag = ("--" if len(self.name) > 1 else "-") + self.name
        if kind == "-":
            return [flag]
        if kind.startswith(":"):  # the value must be attached, or it might not be taken
            return [f"--{self.name}={self.value}"]
        return [flag, self.value]


@dataclass(frozen=True)
class Problem:
    """What GNU parallel will refuse, in Getopt::Long's own words."""

    given: str
    source: str
    message: str  # e.g. "Option jo is ambiguous (joblog, jobs)", "Unknown option: foo"
    candidates: tuple = ()  # an ambiguous abbreviation's options, by GNU parallel's names


@dataclass(frozen=True)
class Source:
    """An input source given after the command: `::: a b` (args) or `:::: f g` (files)."""

    separator: str  # as written: ":::", ":::+", "::::", "::::+" (or --arg-sep's, --arg-file-sep's)
    files: bool
    words: tuple


@dataclass(frozen=True)
class Parsed:
    """A GNU parallel command line as GNU parallel reads it; options are named by GNU parallel's names."""

    options: tuple  # every Option, in the order GNU parallel applies them: profiles, $PARALLEL, command line
    words: tuple  # what follows the options: the profiles', $PARALLEL's, then the command line's
    command: tuple  # the command: the words before the first separator (none: inputs are the commands)
    sources: tuple  # the Sources after it
    problems: tuple = ()  # what GNU parallel will stop at (unknown options, missing values, ...)
    profiles: tuple = ()  # the files options were read from, in order
    argv: tuple = ()  # the command line without the `extra` options: what to give GNU parallel
    extra: tuple = ()  # the `extra` options found on the command line, with their values

    def given(self, name):
        """Whether the option (any of its names) was given."""
        name = _canonical(name)
        return any(opt.name == name for opt in self.options)

    def values(self, name):
        """Every value given to the option, in order (a repeatable option's list)."""
        name = _canonical(name)
        return [opt.value for opt in self.options if opt.name == name]

    def value(self, name):
        """The option's value as GNU parallel keeps it: the last one given; None if not given."""
        values = self.values(name)
        return values[-1] if values else None

    @property
    def ungrouped(self):
        """Jobs write straight to GNU parallel's output: -u, or --tty without --group (not with --dry-run)."""
        if self.given("dry-run"):
            return False
        return self.given("ungroup") or (self.given("tty") and not self.given("group"))

    @property
    def line_buffered(self):
        """GNU parallel prints a job's lines as they come: --line-buffer, --latest-line."""
        return self.given("line-buffer") or self.given("latest-line")

    @property
    def stdin_data(self):
        """What the jobs get on stdin from GNU parallel: "pipe", "pipepart" or None."""
        if self.given("pipe-part"):
            return "pipepart"
        return "pipe" if self._pipe else None

    @property
    def _pipe(self):  # GNU parallel's $opt::pipe: --pipe, or --cat, --fifo, --group-by without --pipe-part
        return self.given("pipe") or (not self.given("pipe-part") and any(self.given(n) for n in _IMPLY_PIPE))

    @property
    def divides_by_slots(self):
        """GNU parallel shares its work out by the number of job slots it has when it starts:
        -m and -X spread the arguments over them, --tee needs one per input value."""
        return self.given("m") or self.given("X") or self.given("tee")

    @property
    def env_names(self):
        """The names --env copies to the jobs (`--env A,B` is two), in order; `_` as given."""
        return [name for value in self.values("env") for name in value.split(",")]

    def env_names_expanded(self, environ=None, home=None):
        """env_names with `_` replaced, as GNU parallel does, by every variable of the environment
        that ~/.parallel/ignored_vars (written by `parallel --record-env`) does not name. Without
        that file `_` stays (GNU parallel itself then fails, saying to run --record-env)."""
        environ = os.environ if environ is None else environ
        names = self.env_names
        if "_" not in names:
            return names
        config = (_config_dirs(environ, home) or [_home(environ, home) + "/.parallel"])[0]
        try:
            with open(os.path.join(config, "ignored_vars")) as f:
                ignored = set(f.read().splitlines())
        except OSError:
            return names
        return [n for n in names if n != "_"] + sorted(n for n in environ if n not in ignored and n != "_")

    @property
    def record_env(self):
        return self.given("recordenv")

    @property
    def tty(self):
        return self.given("tty")

    @property
    def joblog(self):
        return self.value("joblog")

    @property
    def results(self):
        return self.value("results")

    @property
    def has_command(self):
        """Without a command, GNU parallel runs each input as a command."""
        return bool(self.command)

    @property
    def arg_files(self):
        """The files GNU parallel reads inputs from: -a's, then ::::'s (`-` is stdin)."""
        files = self.values("arg-file")
        for source in self.sources:
            if source.files or (self.given("_pipe-means-argfiles") and self._pipe):
                files.extend(source.words)
        return files

    @property
    def reads_stdin(self):
        """Whether GNU parallel reads its own stdin: for inputs or for the jobs' data."""
        if self.stdin_data == "pipepart":  # the first source is the data; with --tee the others are inputs
            others = self._input_sources() - 1
            return self.given("tee") and ((others <= 0 and not self._pipe) or "-" in self.arg_files[1:])
        if self._pipe:
            return True
        return self._input_sources() == 0 or "-" in self.arg_files

    def _input_sources(self):
        count = len(self.values("arg-file"))
        for source in self.sources:
            count += len(source.words) if source.files else 1
        return count + self.given("nonall")

    def normalized(self):
        """The options spelled in full, after --plain: `parallel *normalized() -- *words` reads as this
        command line does, without profiles or $PARALLEL (in a pod, say). Problems are dropped."""
        words = ["--plain"]
        for opt in self.options:
            words.extend(opt.words())
        return words


def parse(argv, environ=None, home=None, extra=None):
    """Read argv (GNU parallel's arguments) as GNU parallel does, with its profiles and $PARALLEL.

    environ defaults to os.environ; home to $HOME (/tmp if unset, as GNU parallel).
    extra maps option words GNU parallel should not see (womm's own: "--kube-pods")
    to whether they take a value; they are recognised, whole, where GNU parallel
    would read an option on the command line, and returned apart in `extra`.
    """
    environ = os.environ if environ is None else environ
    posix = "POSIXLY_CORRECT" in environ
    line = _Reader(COMMAND_LINE, posix, extra).read(argv)
    readings, files = [], []
    if not any(opt.name == "plain" for opt in line.options):
        # Only the command line's -J (or --plain) counts: GNU parallel looks for them before reading any file.
        files = _profile_files([opt.value for opt in line.options if opt.name == "profile"], environ, home)
        readings = [_Reader(path, posix).read(_profile_words(path)) for path in files]
        for variable in ("PARALLEL", "PARALLEL_CSH"):
            if _perl_true(environ.get(variable)):
                readings.append(_Reader("$" + variable, posix).read(shell_words(environ[variable])))
    readings.append(line)
    options = tuple(opt for r in readings for opt in r.options)
    words = [word for r in readings for word in r.rest]
    command, sources = _split_inputs(words, options)
    return Parsed(options, tuple(words), tuple(command), tuple(sources),
                  tuple(p for r in readings for p in r.problems), tuple(files), tuple(line.argv), tuple(line.extra))


def refused(parsed):
    """The one-line reason womm parallel will not run this, or None.

    An ambiguous abbreviation is refused (it might be any of its candidates);
    other problems are left for GNU parallel to report.
    """
    for problem in parsed.problems:
        if problem.candidates:
            which = ", ".join(full_name(name) for name in problem.candidates)
            return f"{_where(problem)}: GNU parallel cannot tell which option this abbreviates: {which}"
    for opt in parsed.options:
        why = REFUSED.get(opt.name)
        if why and (opt.name not in _COMMAND_LINE_ONLY or opt.source == COMMAND_LINE):
            return f"{_where(opt)}: {full_name(opt.name)} is not for womm parallel: {why}"
    return None


def check(parsed):
    """Raise UsageError if womm parallel will not run this."""
    reason = refused(parsed)
    if reason:
        raise UsageError(reason)
    return parsed


def _where(item):
    return item.given if item.source == COMMAND_LINE else f"{item.given} (in {item.source})"


class _Reading:
    def __init__(self):
        self.options, self.problems, self.rest, self.argv, self.extra = [], [], [], [], []


class _Reader:
    """Getopt::Long as GNU parallel configures it (bundling, require_order), over one list of words."""

    def __init__(self, source, posix, extra=None):
        self.source = source
        self.starters = ("--", "-") if posix else ("--", "-", "+")
        self.option_like = re.compile(r"(?:--|-).") if posix else re.compile(r"(?:--|-|\+).")
        self.abbreviations = not posix
        self.extra = extra or {}

    def read(self, words):
        out = _Reading()
        # The words still to read, next last: (word, the word as written it comes from, that word's index,
        # whether it is that word itself rather than what a bundle left).
        todo = [(w, w, i, True) for i, w in reversed(list(enumerate(words)))]
        removed, inserted = set(), {}
        open_value = None  # (index, default) of an optional value that could have taken the next word
        while todo:
            word, given, index, whole = todo.pop()
            if word == "--":
                break
            if whole and word.split("=", 1)[0] in self.extra:
                self._extra(word, index, todo, out, removed)
                if open_value is not None:  # GNU parallel must not take the word after the womm option
                    inserted[open_value[0]] = open_value[1]
                open_value = None
                continue
            open_value = None
            starter = next((s for s in self.starters if word.startswith(s)), None)
            if starter is None or word == "-":
                todo.append((word, given, index, whole))
                break
            default = self._option(word[len(starter):], starter, (given, index), todo, out)
            if default is not None:
                open_value = (index, default)
        out.rest = [entry[0] for entry in reversed(todo)]
        for i, word in enumerate(words):
            if i not in removed:
                out.argv.append(word)
            if i in inserted:
                out.argv.append(inserted[i])
        return out

    def _extra(self, word, index, todo, out, removed):
        """A womm option (and its value): kept apart, and out of GNU parallel's command line."""
        removed.add(index)
        out.extra.append(word)
        if self.extra[word.split("=", 1)[0]] and "=" not in word and todo:
            value = todo.pop()
            removed.add(value[2])
            out.extra.append(value[0])

    def _option(self, body, starter, origin, todo, out):
        """Read one option; push back what is left of a bundle. Returns the default an optional value took."""
        given, index = origin
        optarg = rest = None
        equals = body.find("=", 1) if starter == "--" else -1
        if equals > 0:
            body, optarg = body[:equals], body[equals + 1:]
        if starter == "-":
            name, rest = body[0], body[1:] or None
        elif self.abbreviations and body:
            body = body.lower()
            name = self._expand(body, given, out)
            if name is None:
                return None
        else:
            name = body.lower()
        word = _Word(self.source, starter, given, index, todo, out, name, optarg, rest, self.option_like)
        spec = _SPECS.get(name)
        if spec is None:
            if len(starter) == 1:
                if rest is not None:
                    word.again(rest)
                body = body[:1]
            word.problem(f"Unknown option: {body}" if body else f"Missing option after {starter}")
            return None
        word.spec = spec
        if spec.kind == "-":
            return word.flag()
        if (optarg == "") if optarg is not None else (rest is None and not todo):
            return word.no_value()
        return _READ_VALUE[spec.kind](word, word.value())

    def _expand(self, body, given, out):
        """A long option's name from a unique prefix of one of its names, as Getopt::Long's auto_abbrev."""
        hits = [name for name in _NAMES if name.startswith(body)]
        if len(hits) > 1 and body not in hits:
            options = sorted({_SPECS[name].name for name in hits})
            if len(options) > 1:
                message = f"Option {body} is ambiguous ({', '.join(hits)})"
                out.problems.append(Problem(given, self.source, message, tuple(options)))
                return None
            hits = options
        return hits[0] if len(hits) == 1 else body



class _Word:
    """One option word being read (or what is left of a bundle), and what reading it may do:
    find the option, report a problem, push the rest of a bundle back, take the next word."""

    def __init__(self, source, starter, given, index, todo, out, name, optarg, rest, option_like):
        self.source, self.starter, self.given, self.index = source, starter, given, index
        self.option_like = option_like  # what looks like an option, and so is no optional value
        self.todo, self.out = todo, out
        self.name, self.optarg, self.rest = name, optarg, rest
        self.spec = None
        self.entry = None  # the next word, when the value was taken from it

    def problem(self, message, candidates=()):
        self.out.problems.append(Problem(self.given, self.source, message, tuple(candidates)))

    def again(self, text):
        """The rest of a bundle is read next."""
        self.todo.append((self.starter + text, self.given, self.index, False))

    def found(self, value):
        self.out.options.append(Option(self.spec.name, value, self.given, self.source))

    @property
    def mandatory(self):
        return self.spec.kind.startswith("=")

    @property
    def default(self):
        return "0" if self.spec.kind == ":f" else ""

    def flag(self):
        if self.optarg is not None:
            self.problem(f"Option {self.name} does not take an argument")
            return None
        self.found(None)
        if self.rest is not None:
            self.again(self.rest)
        return None

    def no_value(self):
        """Nothing to take a value from (`--x=`, or the last word)."""
        if self.mandatory:
            self.problem(f"Option {self.name} requires an argument")
            return None
        self.found(self.default)
        return None

    def value(self):
        """The value's text: the rest of the bundle, after `=`, or the next word (taken)."""
        if self.rest is not None:
            return self.rest
        if self.optarg is not None:
            return self.optarg
        self.entry = self.todo.pop()
        return self.entry[0]

    def pair(self, arg):
        if "=" not in arg:
            self.problem(f'Option {self.name}, key "{arg}", requires a value')
            if self.rest is not None:
                self.again(self.rest)
            return None
        self.found(arg)
        return None

    def string(self, arg):
        if self.mandatory or self.optarg is not None or self.rest is not None or arg == "-":
            self.found(arg)
            return None
        if arg == "--" or self.option_like.match(arg):  # an optional value does not take an option
            self.todo.append(self.entry)
            self.found(self.default)
            return self.default
        self.found(arg)
        return None

    def number(self, arg):
        number = self.spec.kind[1]  # "i" or "f"
        leading = _LEADING[number].match(self.rest) if self.rest is not None else None
        if leading:  # in a bundle, the digits only: the rest is a bundle again
            self.found(leading.group(1))
            if leading.group(2):
                self.again(leading.group(2))
        elif _WHOLE[number].match(arg):
            self.found(arg)
        elif self.optarg is not None or self.mandatory:
            self.problem(f'Value "{arg}" invalid for option {self.name} ({_WHAT[number]})')
            if self.rest is not None:
                self.again(self.rest)
        else:  # an optional number that is not one: the word stays for what follows
            if self.rest is not None:
                self.again(self.rest)
            else:
                self.todo.append(self.entry)
            self.found(self.default)
            return self.default
        return None


# How each kind of value is read (womm's reading of Getopt::Long's).
_READ_VALUE = {"=s%": _Word.pair, "=s": _Word.string, ":s": _Word.string,
               "=i": _Word.number, "=f": _Word.number, ":f": _Word.number}


def shell_words(text):
    """Split text into words as GNU parallel splits $PARALLEL and each line of a profile.

    That is Perl's Text::ParseWords::shellwords, which is not sh: a backslash
    escapes any character, unquoted or in double quotes; in single quotes it
    stays, and so does the character after it (`'a\\'b'` is the word a\\'b); an
    unbalanced quote, or a backslash at the very end, gives no words at all.
    """
    text = text.lstrip(_SPACE)
    words, word, i, n = [], None, 0, len(text)
    while i < n:
        if text[i] in "\"'":
            quote, j = text[i], i + 1
            while j < n and text[j] != quote:
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                return []
            piece = text[i + 1:j]
            word = (word or "") + (_unescape(piece) if quote == '"' else piece)
            i = j + 1
        else:
            j = i
            while j < n and text[j] not in _SPACE and text[j] not in "\"'":
                if text[j] == "\\" and j + 1 == n:
                    return []
                j += 2 if text[j] == "\\" else 1
            word = (word or "") + _unescape(text[i:j])
            i = j
            if i < n and text[i] in _SPACE:
                words.append(word)
                word = None
                while i < n and text[i] in _SPACE:
                    i += 1
        if i == n and word is not None:
            words.append(word)
    return words


_SPACE = " \t\n\r\f\v"  # Perl's \s, for bytes


def _unescape(text):
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


def _perl_true(value):
    return value is not None and value not in ("", "0")


def _config_dirs(environ, home):
    """GNU parallel's config directories: $PARALLEL_HOME, $XDG_CONFIG_HOME/parallel, each of
    $XDG_CONFIG_DIRS/parallel, ~/.parallel; those that exist (an unset XDG_CONFIG_HOME is "")."""
    xdg_dirs = environ.get("XDG_CONFIG_DIRS", "").split(":")
    while xdg_dirs and not xdg_dirs[-1]:  # Perl's split drops empty fields at the end
        xdg_dirs.pop()
    dirs = [environ.get("PARALLEL_HOME") or ""]
    dirs += [d + "/parallel" for d in [environ.get("XDG_CONFIG_HOME", ""), *xdg_dirs]]
    dirs.append(_home(environ, home) + "/.parallel")
    return [d for d in dirs if d and os.path.isdir(d)]


def _home(environ, home):
    if home is not None:
        return str(home)
    return environ.get("HOME") if _perl_true(environ.get("HOME")) else "/tmp"


def _profile_files(profiles, environ, home):
    """The files GNU parallel reads options from, in order; a profile it cannot read is silently skipped."""
    dirs = _config_dirs(environ, home)
    if profiles:
        paths = []
        for name in profiles:
            paths.extend([name] if name.startswith(("./", "/")) else [f"{d}/{name}" for d in dirs])
    else:
        paths = ["/etc/parallel/config", *(f"{d}/config" for d in dirs), _home(environ, home) + "/.parallelrc"]
    return [path for path in paths if os.access(path, os.R_OK)]


def _profile_words(path):
    """A profile's words: each line split as $PARALLEL is, all lines one list; lines starting with # skipped."""
    try:
        with open(path, "rb") as f:
            text = os.fsdecode(f.read())
    except OSError:  # a directory, say: GNU parallel reads nothing from it either
        return []
    words = []
    for line in text.split("\n"):
        if not line.lstrip(_SPACE).startswith("#"):
            words.extend(shell_words(line))
    return words


def _split_inputs(words, options):
    """The command, and the input sources after it, as GNU parallel separates them."""

    def last(name):
        values = [opt.value for opt in options if opt.name == name]
        return values[-1] if values else None

    arg_sep = last("arg-sep") if last("arg-sep") is not None else ":::"
    file_sep = last("arg-file-sep") if last("arg-file-sep") is not None else "::::"
    if any(opt.name == "nonall" for opt in options):  # an input source of one (empty) argument
        arg_sep = "\0--nonall"
        words = [*words, arg_sep, "\0noarg"]
    separators = {arg_sep, arg_sep + "+", file_sep, file_sep + "+"}
    starts = [i for i, word in enumerate(words) if word in separators]
    if not starts:
        return words, []
    if starts[0] == len(words) - 1:  # GNU parallel drops a separator that is the very last word
        return words[:-1], []
    sources = []
    for start, end in zip(starts, [*starts[1:], len(words)], strict=True):
        sep = words[start]
        sources.append(Source(sep, sep in (file_sep, file_sep + "+"), tuple(words[start + 1:end])))
    return words[:starts[0]], sources
