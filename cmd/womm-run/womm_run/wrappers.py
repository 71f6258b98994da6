"""GNU parallel's own wrappers around a job's command, seen through: what runs here, what in the pod.

GNU parallel (20221122) wraps the user's command for some options, in shell and perl written
for this machine. job.sh runs those that call the job shell again (--env's variables, and
--pipe's wrapper around another wrapper that does) here: their inner call is the job. The others
reach the controller, which unwraps them (womm_run.localjobs.Job.attach):

  --pipe       `perl -e 'IF INPUT, COPY' SHELL -c COMMAND`: COMMAND (itself unwrapped) runs in
               the pod only when its stdin has a byte, its stdin job.sh's (no copy through perl
               here); with none, the job ends with 0 and runs nowhere
  --pipepart   `<FILE perl -e 'SEEK' OFFSET LENGTH ... |(COMMAND)`: COMMAND runs in the pod, its
               stdin the byte ranges of FILE, read here
  --tee        `(rm FIFO;(COMMAND)) < FIFO`: COMMAND in the pod, its stdin that local fifo
  --cat        `cat > $PARALLEL_TMP;COMMAND;perl -e 'CLEANUP' ...`: all in the pod (the file is
               the pod's), the cleanup in sh
  --fifo       `perl -e 'MKFIFO' SHELL 'COMMAND' $PARALLEL_TMP;`: in the pod, in sh (mkfifo, cat)

--cat and --fifo need cat, rm and mkfifo in the image, as they need them here.
"""

import re
import shlex
from dataclasses import dataclass, field

_PIPEPART = re.compile(rb"^<(?P<file>(?:[^\s'\\]|\\.|'[^']*')+) perl -e '(?P<perl>while\(@ARGV\)\{sysseek[^']*)'"
                       rb"(?P<ranges>(?: \d+ \d+)+) \|\((?P<command>.*)\)$", re.S)
_PIPE = re.compile(rb"^perl -e '(?P<perl>if\(sysread\(STDIN,\$buf,1\)\)\{open\(\$fh,\"\|-\",@ARGV\)[^']*)' "
                   rb"(?P<call>.*)$", re.S)
_TEE = re.compile(rb"^\(rm (?P<fifo>\S+);\((?P<command>.*)\)\) < (?P=fifo)$", re.S)
_CAT_START = b"cat > $PARALLEL_TMP;"
# Its last words: the exit status for bash and for csh (in double quotes), then the file.
_CAT_END = re.compile(rb";perl -e '\$bash=shift;\$csh=shift;for\(@ARGV\)\{unlink;rmdir;\}[^']*' "
                      rb"\"[^\"]*\" \"\$status\" \$PARALLEL_TMP$")
_FIFO_START = b"perl -e '($s,$c,$f)=@ARGV;system\"mkfifo\",$f;"
# The job.sh test for it, in sh's quoting: see job.sh.
FIFO_PREFIX = _FIFO_START

_AFTER = b'_womm_s=$?; rm -f "$PARALLEL_TMP"; exit $_womm_s'


@dataclass
class Unwrapped:
    command: bytes  # what runs in the pod
    stdin_file: bytes = None  # read the job's stdin from this local file instead of job.sh's
    ranges: list = field(default_factory=list)  # [(offset, length)] of stdin_file (--pipepart)
    remove: bool = False  # remove stdin_file once opened (--tee's fifo)
    env: tuple = ()  # job.sh's variables the pod's job needs (PARALLEL_TMP)
    only_with_input: bool = False  # run it only if its stdin has a byte (--pipe's wrapper)


def unwrap(command):
    """The command as GNU parallel wrapped it, seen through."""
    m = _PIPE.match(command)
    if m:
        words = shlex.split(m.group("call").decode("utf-8", "surrogateescape"))  # SHELL -c COMMAND
        if len(words) == 3 and words[1] == "-c":
            inner = unwrap(words[2].encode("utf-8", "surrogateescape"))
            inner.only_with_input = True
            return inner
    m = _PIPEPART.match(command)
    if m:
        numbers = [int(n) for n in m.group("ranges").split()]
        (name,) = shlex.split(m.group("file").decode("utf-8", "surrogateescape"))
        return Unwrapped(m.group("command"), stdin_file=name.encode("utf-8", "surrogateescape"),
                         ranges=list(zip(numbers[0::2], numbers[1::2], strict=True)))
    m = _TEE.match(command)
    if m:
        return Unwrapped(m.group("command"), stdin_file=m.group("fifo"), remove=True)
    if command.startswith(_CAT_START):
        m = _CAT_END.search(command)
        if m:
            inner = command[:m.start()]
            return Unwrapped(inner + b"; " + _AFTER, env=(b"PARALLEL_TMP",))
    if command.startswith(_FIFO_START):
        words = shlex.split(command.decode("utf-8", "surrogateescape"))
        # perl -e SCRIPT SHELL COMMAND $PARALLEL_TMP;
        if len(words) == 6 and words[5] == "$PARALLEL_TMP;":
            user = words[4].encode("utf-8", "surrogateescape")
            return Unwrapped(b'mkfifo "$PARALLEL_TMP" || exit 255; (' + user + b') & cat > "$PARALLEL_TMP"; '
                             b'wait $!; ' + _AFTER, env=(b"PARALLEL_TMP",))
    return Unwrapped(command)
