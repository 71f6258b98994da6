"""womm-fs: see cli.py."""
