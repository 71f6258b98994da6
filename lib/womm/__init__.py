"""womm, "Works On My Machine": GNU parallel with Kubernetes pods as job slots.

This package is the library the womm-* programs share. Keep it light at import
time: the dispatcher and the per-job paths import it, so nothing heavy
(kubernetes, docker) is imported at module level anywhere in it.
"""

__version__ = "0.2.0"
