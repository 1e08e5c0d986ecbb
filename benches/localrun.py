"""What the benches' standalone scripts (`benches/burst`, `benches/dbprofile`) share: free
loopback ports, the processes a run starts (each logging to its own file in one directory),
and waiting for them to come up."""
import os
import socket
import subprocess
import sys
import tempfile
import time

# The receiver's and the webhooks' signing secret.
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Processes:
    """The processes of one run of script `name`, logging to files in `state`, a new
    temporary directory."""

    def __init__(self, name):
        self.name = name
        self.state = tempfile.mkdtemp(prefix=f"herald-{name}-")
        self.procs = []

    def start(self, cmd, log, env=None):
        out = open(os.path.join(self.state, log), "w")
        self.procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env))

    def wait_for(self, what, check, seconds, poll):
        """Until `check()` is true (an exception counts as not yet); exits the script if it
        is not within `seconds`."""
        until = time.time() + seconds
        while time.time() < until:
            try:
                if check():
                    return
            except Exception:
                pass
            time.sleep(poll)
        sys.exit(f"{self.name}: {what} did not come up within {seconds} s")

    def stop(self):
        """Terminates them, the last started first, and waits for each (killing it after 5 s)."""
        for p in reversed(self.procs):
            p.terminate()
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
