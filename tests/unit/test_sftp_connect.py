"""`womm-fs sftp-connect`, a worker pod's end of the lazy share: the connection to the share cache,
opened with the task's token, becomes its command's stdin and stdout (sshfs -o passive there)."""

import socket
import subprocess
import sys
import threading


def test_the_connection_begins_with_the_token_and_is_the_commands_stdin_and_stdout(tmp_path):
    token = "ab" * 32
    (tmp_path / "token").write_text(token + "\n")
    server = socket.create_server(("127.0.0.1", 0))
    seen = {}

    def serve():
        conn, _ = server.accept()
        with conn, conn.makefile("rwb") as f:
            seen["token"] = f.readline()
            f.write(b"hello\n")
            f.flush()
            seen["answer"] = f.readline()
            seen["end"] = f.read()  # the command exited: the connection ends

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    proc = subprocess.run(
        [sys.executable, "-m", "womm_fs", "sftp-connect", "127.0.0.1", str(server.getsockname()[1]),
         str(tmp_path / "token"), "sh", "-c", 'read -r x; echo "got $x"; echo "to stderr" >&2'],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
    t.join(10)
    assert proc.returncode == 0, proc.stderr
    assert seen == {"token": token.encode() + b"\n", "answer": b"got hello\n", "end": b""}
    assert proc.stdout == b""  # the command's stdout was the connection, not ours
    assert proc.stderr == b"to stderr\n"


def test_no_command_is_a_one_line_error(tmp_path):
    (tmp_path / "token").write_text("ab" * 32 + "\n")
    proc = subprocess.run([sys.executable, "-m", "womm_fs", "sftp-connect", "127.0.0.1", "1", str(tmp_path / "token")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and "give the command" in proc.stderr, proc.stderr
