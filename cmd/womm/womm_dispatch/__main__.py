"""womm: see cli.py."""
import sys

from womm_dispatch.cli import main

sys.exit(main())
