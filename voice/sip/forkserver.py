"""The SIP worker factory: one process that imports pjsua2, numpy and opuslib once, then forks
a pjsua2 worker (`voice.sip.pj`) for each request of the pool (`python -m voice.sip.forkserver
FD`, started by `voice.sip.pool`).

Why: a worker started as a fresh interpreter costs ~0.25 s of CPU, 0.2 s of it imports, and
1-2.5 s of wall time once a 2-core machine carries calls. A burst of 20 calls a second needs
5 new workers a second, so the pool fell behind and INVITEs waited into 503s (at 100 calls only
~88 came up). A fork of this process costs a few ms. The server never calls into pjsua2
(pjlib is initialised in the child, after the fork), so no pjsua2 assertion can take it down,
and it has one thread when it forks (the pool sets OPENBLAS_NUM_THREADS=1).

Over its socket (SOCK_SEQPACKET):
    pool -> server   JSON worker config, with the worker's end of its own socket (SCM_RIGHTS)
    server -> pool   {"t": "ready"} once imported; {"t": "exit", "pid", "code"} per worker

Workers die with the server (PR_SET_PDEATHSIG), the server with the API process; the server
also leaves when its socket closes. It blocks in `recvmsg` and costs nothing while idle.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys


def _reap(control: socket.socket, server_pid: int) -> None:
    """SIGCHLD: collect exited workers (no zombies) and tell the pool how each ended."""
    if os.getpid() != server_pid:
        return
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        report = {"t": "exit", "pid": pid, "code": os.waitstatus_to_exitcode(status)}
        with contextlib.suppress(OSError):
            control.send(json.dumps(report).encode())


def main() -> None:
    from voice.sip import pj  # the imports every worker shares, paid once here

    pj.die_with_parent()
    control = socket.socket(fileno=int(sys.argv[1]))
    server_pid = os.getpid()
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGCHLD, lambda *_: _reap(control, server_pid))
    control.send(json.dumps({"t": "ready", "pid": server_pid}).encode())
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(control, 1 << 16, 1)
        except OSError:
            data, fds = b"", []
        if not data:
            os._exit(0)  # the pool went away; the workers follow (PDEATHSIG)
        if not fds:
            continue
        try:
            config = json.loads(data)
            pid = os.fork()
        except (ValueError, OSError):
            os.close(fds[0])  # the pool sees the worker's socket close: a failed start
            continue
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            try:
                control.close()
                config["fd"] = fds[0]
                pj.serve(config)
            finally:
                os._exit(1)
        os.close(fds[0])  # only the worker holds it now: its exit closes the pool's end


if __name__ == "__main__":
    main()
