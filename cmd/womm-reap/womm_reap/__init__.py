"""womm-reap: see cli.py."""
