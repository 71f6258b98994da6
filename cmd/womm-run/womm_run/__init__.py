"""womm-run: see cli.py."""
