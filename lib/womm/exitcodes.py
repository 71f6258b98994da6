"""Exit codes of every womm program, in one place.

womm-run mirrors GNU parallel: 1-100 is the number of failed jobs, 101 means
more than 100 failed, 255 any other error. The other programs use the usual
0 / 1 / 2 of command-line tools.
"""

OK = 0
FAILURE = 1  # the command ran and something failed
USAGE = 2  # bad arguments or input: nothing was done
PARALLEL_OTHER_ERROR = 255
INTERRUPTED = 130  # 128 + SIGINT, as shells report it
