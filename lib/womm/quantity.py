"""Kubernetes quantities as numbers, and back: CPU in millicores, memory in bytes.

Enough of the API's grammar for what people write and what LimitRanges and quotas hold:
`250m`, `0.5`, `2`; `96Mi`, `1Gi`, `500M`, `128974848`, `1e3`.
"""

import re

_SUFFIX = {"": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60, "m": 10**-3}
_QUANTITY = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?([a-zA-Z]*)")


def value(text):
    """The quantity as a number (cores, bytes); ValueError if it is not one."""
    m = _QUANTITY.fullmatch(str(text).strip())
    if not m or m.group(3) not in _SUFFIX:
        raise ValueError(f"not a quantity: {text!r}")
    number = float(m.group(1)) * (10 ** int(m.group(2)) if m.group(2) else 1)
    return number * _SUFFIX[m.group(3)]


def millicores(text):
    return round(value(text) * 1000)


def cpu(millis):
    """Millicores as the API writes them: `250m`, `2`."""
    return f"{millis // 1000}" if millis % 1000 == 0 else f"{millis}m"


def memory(nbytes):
    """Bytes as people write them: `96Mi`, `1Gi`, else bytes."""
    nbytes = int(round(nbytes))
    for suffix in ("Gi", "Mi", "Ki"):
        if nbytes % _SUFFIX[suffix] == 0:
            return f"{nbytes // _SUFFIX[suffix]}{suffix}"
    return str(int(nbytes))
