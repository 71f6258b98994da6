import sys

from womm_reap.cli import main

sys.exit(main())
