"""womm: the dispatcher (see cli.py)."""
