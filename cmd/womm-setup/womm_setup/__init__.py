"""womm-setup: see cli.py."""
