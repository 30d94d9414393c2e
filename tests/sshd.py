"""A throwaway OpenSSH server on loopback, for tests and benchmarks that need real SSH hosts.

sshd listens on 0.0.0.0:<port> so that every address in 127.0.0.0/8 reaches it (each address acts
as a separate host for Ansible); a ``Match Address`` block denies every user to clients outside
127.0.0.0/8. Only key login as the current user is allowed, with a client key made in ``workdir``.
Sessions get ``HOME=<workdir>/home``, so the user's real dotfiles (e.g. a ~/.bashrc that bash sources
for every ssh command) never run on the "hosts", and Ansible's remote tmp lands in the lab.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

import psutil

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
MAX_HOSTS = 250 * 256


def _quote(value: Path | str) -> str:
    """Quote a value for sshd_config, which splits arguments on whitespace."""
    return f'"{value}"'


def _free_port() -> int:
    """Return a TCP port that is free on 0.0.0.0 right now."""
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", 0))
        return sock.getsockname()[1]


class SshLab:
    """Run a private sshd as a child process; use ``address(n)`` as the address of host n."""

    def __init__(self, workdir: Path, sftp: bool = True) -> None:
        self.workdir = Path(workdir).resolve()
        # Without it, the server offers no SFTP subsystem, as some hardened hosts do.
        self.sftp = sftp
        self.port = 0
        self.user = pwd.getpwuid(os.geteuid()).pw_name
        self.private_key_path = self.workdir / "client_ed25519"
        self.config_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self.home = self.workdir / "home"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def private_key(self) -> str:
        """The client private key (OpenSSH format), for ``ansible_ssh_private_key_file`` or an API."""
        return self.private_key_path.read_text()

    def inventory(self, hosts: int) -> dict:
        """Ansible inventory data for hosts 0 .. hosts-1, logging in with the lab's key."""
        return {
            "all": {
                "hosts": {f"h{n:05d}": {"ansible_host": self.address(n)} for n in range(hosts)},
                "vars": {
                    "ansible_connection": "ssh",
                    "ansible_port": self.port,
                    "ansible_user": self.user,
                    "ansible_ssh_private_key_file": str(self.private_key_path),
                    "ansible_ssh_use_tty": False,
                },
            }
        }

    @staticmethod
    def address(n: int) -> str:
        """Return the loopback address of host number n (0 -> 127.0.0.2, never 127.0.0.1)."""
        if not 0 <= n < MAX_HOSTS:
            raise ValueError(f"host number must be in [0, {MAX_HOSTS}), got {n}")
        return f"127.0.{n // 250}.{n % 250 + 2}"

    def start(self) -> None:
        """Generate keys and config, start sshd and wait until its port answers with an SSH banner."""
        if self._proc is not None:
            raise RuntimeError("SshLab is already started")
        if not SSHD.is_file():
            raise RuntimeError(f"{SSHD} not found: install the openssh-server package")
        self.home.mkdir(parents=True, exist_ok=True)
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        host_key = self.workdir / "host_ed25519"
        authorized_keys = self.workdir / "authorized_keys"
        for key in (host_key, self.private_key_path):
            key.unlink(missing_ok=True)
            key.with_name(key.name + ".pub").unlink(missing_ok=True)
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "opsflow-sshlab", "-f", str(key)],
                check=True,
                capture_output=True,
            )
        authorized_keys.write_text(Path(f"{self.private_key_path}.pub").read_text())
        self.port = _free_port()
        config = self._config(host_key, authorized_keys)
        self.config_path.write_text(config)
        if self._accepts("PerSourcePenalties=no"):
            # OpenSSH >= 9.8 throttles source addresses after failed or unauthenticated connections.
            self.config_path.write_text("PerSourcePenalties no\n" + config)
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [str(SSHD), "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            self._wait_ready(self._proc)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop sshd and every session process it forked; a no-op when not running."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            sessions = psutil.Process(proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            sessions = []
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        # Session processes outlive the listener; ending them also closes clients' ControlMaster sockets.
        for child in sessions:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        _, alive = psutil.wait_procs(sessions, timeout=5)
        for child in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()

    def __enter__(self) -> SshLab:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _config(self, host_key: Path, authorized_keys: Path) -> str:
        """Return the sshd_config text."""
        return f"""\
ListenAddress 0.0.0.0:{self.port}
AddressFamily inet
HostKey {_quote(host_key)}
PidFile {_quote(self.workdir / "sshd.pid")}
AuthorizedKeysFile {_quote(authorized_keys)}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
StrictModes no
UsePAM no
MaxStartups 2000
MaxSessions 100
SetEnv {_quote(f"HOME={self.home}")}
{"Subsystem sftp internal-sftp" if self.sftp else ""}
Match Address *,!127.0.0.0/8
    DenyUsers *
"""

    def _accepts(self, option: str) -> bool:
        """Return whether this sshd accepts ``option`` (``Keyword=value``) on top of the written config."""
        check = subprocess.run(
            [str(SSHD), "-t", "-f", str(self.config_path), "-o", option],
            capture_output=True,
        )
        return check.returncode == 0

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
        """Wait until sshd sends its banner on the port, or raise with the end of its log."""
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {proc.returncode}:\n{self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    if sock.recv(8).startswith(b"SSH-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd did not answer on port {self.port}:\n{self._log_tail()}")
            time.sleep(0.05)

    def _log_tail(self) -> str:
        """Return the last lines sshd wrote."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-20:])
