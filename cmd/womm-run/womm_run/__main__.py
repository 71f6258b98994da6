import sys

from womm_run.cli import main

sys.exit(main())
