import sys

from womm_fs.cli import main

sys.exit(main())
