import sys

from womm_setup.cli import main

sys.exit(main())
