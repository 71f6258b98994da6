"""The end-of-job marker is stripped exactly, whatever the chunking of the stream."""

import random

from womm_run.controller import MarkerParser

TOKEN = "0123456789abcdef0123456789abcdef"


def frame(outputs):
    return b"".join(out + b"\n" + TOKEN.encode() + b" %d\n" % status for out, status in outputs)


def parse_all(data, chunks):
    p = MarkerParser(TOKEN)
    jobs, current = [], b""
    pos = 0
    for size in chunks:
        for kind, value in p.feed(data[pos:pos + size]):
            if kind == "data":
                current += value
            else:
                jobs.append((current, value))
                current = b""
        pos += size
    assert pos >= len(data)
    return jobs, current


def test_every_split_gives_the_same_jobs():
    outputs = [(b"hello\n", 0), (b"", 3), (b"no newline", 1), (b"\n\n" + TOKEN[:10].encode(), 0),
               (bytes(range(256)) * 3, 255)]
    data = frame(outputs)
    rng = random.Random(7)
    for _ in range(300):
        chunks = []
        while sum(chunks) < len(data):
            chunks.append(rng.randint(1, 40))
        jobs, rest = parse_all(data, chunks)
        assert jobs == outputs and rest == b""


def test_output_is_passed_on_before_the_job_ends():
    p = MarkerParser(TOKEN)
    assert p.feed(b"partial line") == [("data", b"partial line")]
    assert p.feed(b"\n") == []  # could be the start of a marker
    assert p.feed(b"more") == [("data", b"\nmore")]
