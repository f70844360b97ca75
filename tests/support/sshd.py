"""A real OpenSSH server on 127.0.0.1 for tests: a host reached like production, over SSH with become.

:class:`SshServer` runs Debian's ``sshd`` in the foreground (``sshd -D -e -f CONFIG``) on a free port of
127.0.0.1, with its own host key, PID file, ``AuthorizedKeysFile`` and log, ``UsePAM no``, ``StrictModes no``,
``PasswordAuthentication no``. Nothing of the machine's SSH setup is used or changed:

- the binary is ``/usr/sbin/sshd`` when the machine has one; otherwise Debian's ``openssh-server`` (and
  ``openssh-sftp-server``, for Ansible's file transfers) is fetched with ``apt-get download`` and unpacked with
  ``dpkg -x`` into ``.cache/openssh-server/`` of the repository: the package is never installed, so no
  system sshd is started. ``sshd`` needs ``libwrap0`` (scripts/setup.sh installs it);
- the login user (``atlasiaops`` by default) is an unprivileged user, created with ``useradd`` when missing,
  logging in with an ed25519 key the server object generates; ``sudo`` without a password comes from a file
  in ``/etc/sudoers.d`` written at start and removed at stop (``sudo`` itself: scripts/setup.sh);
- the client trusts the server through a known_hosts file holding the server's host key
  (:meth:`SshServer.ssh_options` gives ``StrictHostKeyChecking=yes`` and ``UserKnownHostsFile``);
- :meth:`SshServer.stop` stops the listener by its PID and every process descended from it at that moment
  (sshd forks one process per connection, which leaves the listener's process group with ``setsid``: the
  descendants are looked up in /proc when stopping, not remembered at start), SIGKILL after a grace period.

Everything the server reads lives in a private, world-traversable folder (the login user reads its
authorized_keys itself), removed at stop. Root is required (sshd, useradd, sudoers).

On such a host a module has no ``ansible-playbook`` parent process: code that identifies "the run" by its
parent process behaves differently here than with ``connection: local``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from tests.support import REPO_ROOT
from tests.support.process import free_port, pid_alive

HOST = "127.0.0.1"
DEFAULT_USER = "atlasiaops"
CACHE_DIR = REPO_ROOT / ".cache" / "openssh-server"
PACKAGES = ("openssh-server", "openssh-sftp-server")
SUDOERS_DIR = Path("/etc/sudoers.d")
COMMAND_TIMEOUT = 300


class SshdError(RuntimeError):
    """The SSH server could not be prepared or started; the message says why."""


def _run(argv, **kwargs):
    kwargs.setdefault("capture_output", True)
    kwargs.setdefault("text", True)
    kwargs.setdefault("timeout", COMMAND_TIMEOUT)
    check = kwargs.pop("check", False)
    return subprocess.run(argv, check=check, **kwargs)


def sshd_binary(cache_dir: Path = CACHE_DIR) -> tuple:
    """``(sshd, sftp_server)``: the machine's when installed, else unpacked from Debian's packages in ``cache_dir``."""
    if os.path.exists("/usr/sbin/sshd"):
        sftp = "/usr/lib/openssh/sftp-server"
        return "/usr/sbin/sshd", sftp if os.path.exists(sftp) else "internal-sftp"
    root = Path(cache_dir) / "root"
    sshd = root / "usr" / "sbin" / "sshd"
    sftp = root / "usr" / "lib" / "openssh" / "sftp-server"
    if not (sshd.exists() and sftp.exists()):
        if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
            raise SshdError("no /usr/sbin/sshd and no apt-get/dpkg to fetch Debian's openssh-server")
        debs = Path(cache_dir) / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        # apt-get download writes into the current folder; as root it warns that _apt cannot write there.
        proc = _run(["apt-get", "download", *PACKAGES], cwd=str(debs))
        if proc.returncode != 0:
            raise SshdError("apt-get download %s failed (run apt-get update?): %s"
                            % (" ".join(PACKAGES), (proc.stderr or proc.stdout).strip()[-2000:]))
        staging = Path(tempfile.mkdtemp(prefix="root.", dir=str(cache_dir)))
        try:
            for package in PACKAGES:
                found = sorted(debs.glob("%s_*.deb" % package))
                if not found:
                    raise SshdError("apt-get download left no %s_*.deb in %s" % (package, debs))
                proc = _run(["dpkg", "-x", str(found[-1]), str(staging)])
                if proc.returncode != 0:
                    raise SshdError("dpkg -x %s failed: %s" % (found[-1], proc.stderr.strip()))
            if root.exists():
                shutil.rmtree(root)
            staging.rename(root)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    proc = _run([str(sshd), "-V"])
    if "OpenSSH" not in proc.stderr + proc.stdout:
        raise SshdError("%s does not run (libwrap0 missing? scripts/setup.sh installs it): %s"
                        % (sshd, (proc.stderr or proc.stdout).strip()))
    return str(sshd), str(sftp)


def ensure_user(name: str, **useradd_args) -> pwd.struct_passwd:
    """The user ``name``, created with ``useradd`` (extra ``--option value`` pairs) when missing."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    argv = [shutil.which("useradd") or "/usr/sbin/useradd"]
    for option, value in useradd_args.items():
        argv.append("--" + option.replace("_", "-"))
        if value is not True:
            argv.append(str(value))
    proc = _run(argv + [name])
    try:  # another process may have created it meanwhile
        return pwd.getpwnam(name)
    except KeyError:
        raise SshdError("cannot create user %s: %s" % (name, proc.stderr.strip())) from None


def _unlock(name: str) -> None:
    """Without PAM, sshd refuses a locked account ('!' password, useradd's default): set '*' (no password login)."""
    try:
        with open("/etc/shadow", encoding="utf-8") as handle:
            fields = next((line.split(":") for line in handle if line.startswith(name + ":")), None)
    except OSError:
        return
    if fields is not None and fields[1].startswith("!"):
        proc = _run([shutil.which("usermod") or "/usr/sbin/usermod", "--password", "*", name])
        if proc.returncode != 0:
            raise SshdError("cannot unlock user %s for key logins: %s" % (name, proc.stderr.strip()))


def descendants(pid: int) -> list:
    """PIDs of every live process descended from ``pid`` (read from /proc now), children before grandchildren."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry, encoding="ascii", errors="replace") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            if child not in found:
                found.append(child)
                todo.append(child)
    return found


class SshServer:
    """``sshd`` on 127.0.0.1:``port`` letting ``user`` in with a generated key; ``sudo`` without password.

    Attributes after :meth:`start`: ``host``, ``port``, ``user``, ``key_file`` (the client's private key),
    ``known_hosts`` (the server's host key for ``[127.0.0.1]:port``), ``dir``, ``log_file``, ``pid``.
    """

    def __init__(self, user: str = DEFAULT_USER, port: int | None = None, directory: str | None = None):
        self.user = user
        self.host = HOST
        self.port = port
        self.dir = Path(directory) if directory else None
        self._own_dir = directory is None
        self.process = None
        self.pid = None
        self.sudoers_file = SUDOERS_DIR / ("atlasia-dr-test-%s" % user)
        self._made_run_sshd = False

    # -- paths ----------------------------------------------------------------------------------------------
    @property
    def key_file(self) -> Path:
        return self.dir / "client" / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.dir / "client" / "known_hosts"

    @property
    def log_file(self) -> Path:
        return self.dir / "sshd.log"

    @property
    def config_file(self) -> Path:
        return self.dir / "sshd_config"

    # -- life cycle -------------------------------------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> "SshServer":
        if os.geteuid() != 0:
            raise SshdError("a test SSH server needs root (sshd, useradd, /etc/sudoers.d)")
        try:
            self._prepare()
            self._launch(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare(self):
        sshd, sftp = sshd_binary()
        self.sshd = sshd
        # sshd's privilege separation needs its user and its empty chroot folder (the package would make both).
        ensure_user("sshd", system=True, no_create_home=True, home_dir="/run/sshd", shell="/usr/sbin/nologin")
        if not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755)
            self._made_run_sshd = True
        account = ensure_user(self.user, create_home=True, shell="/bin/sh", password="*",
                              comment="atlasia.dr test operator")
        _unlock(self.user)
        sudo = shutil.which("sudo")
        if sudo is None:
            raise SshdError("sudo is not installed (scripts/setup.sh installs it)")
        if self.dir is None:
            self.dir = Path(tempfile.mkdtemp(prefix="atlasia-sshd-"))
        self.dir.mkdir(parents=True, exist_ok=True)
        # The login user reads its authorized_keys with its own rights: the folder must be traversable.
        os.chmod(self.dir, 0o755)
        (self.dir / "client").mkdir(mode=0o700, exist_ok=True)
        host_key = self.dir / "ssh_host_ed25519_key"
        for path, comment in ((host_key, "atlasia-dr-test-host"), (self.key_file, "atlasia-dr-test-client")):
            if not path.exists():
                proc = _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
                if proc.returncode != 0:
                    raise SshdError("ssh-keygen failed: %s" % proc.stderr.strip())
        authorized = self.dir / "authorized_keys"
        authorized.write_text(Path(str(self.key_file) + ".pub").read_text())
        os.chown(authorized, account.pw_uid, account.pw_gid)
        authorized.chmod(0o600)
        if self.port is None:
            self.port = free_port(HOST)
        host_pub = Path(str(host_key) + ".pub").read_text().split()
        # OpenSSH names a host on port 22 without the [host]:port form
        pattern = HOST if self.port == 22 else "[%s]:%d" % (HOST, self.port)
        self.known_hosts.write_text("%s %s %s\n" % (pattern, host_pub[0], host_pub[1]))
        self.config_file.write_text("\n".join([
            "# atlasia.dr test SSH server (tests/support/sshd.py)",
            "Port %d" % self.port,
            "ListenAddress %s" % HOST,
            "HostKey %s" % host_key,
            "PidFile %s" % (self.dir / "sshd.pid"),
            "AuthorizedKeysFile %s" % authorized,
            "AllowUsers %s" % self.user,
            "UsePAM no",
            "StrictModes no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "PubkeyAuthentication yes",
            "PermitRootLogin no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "PrintMotd no",
            "LogLevel VERBOSE",
            # Ansible opens several connections at once (forks, ControlPersist masters)
            "MaxStartups 50:30:100",
            "MaxSessions 50",
            "Subsystem sftp %s" % sftp,
            "",
        ]))
        self.config_file.chmod(0o600)
        proc = _run([sshd, "-t", "-f", str(self.config_file)])
        if proc.returncode != 0:
            raise SshdError("sshd -t rejects %s: %s" % (self.config_file, (proc.stderr or proc.stdout).strip()))
        # Passwordless sudo for the login user: Ansible's become.
        text = ("# atlasia.dr test (tests/support/sshd.py): removed when the test stops\n"
                "%s ALL=(ALL:ALL) NOPASSWD: ALL\n" % self.user)
        staged = self.dir / "sudoers"
        staged.write_text(text)
        staged.chmod(0o440)
        visudo = shutil.which("visudo") or "/usr/sbin/visudo"
        if os.path.exists(visudo):
            proc = _run([visudo, "-c", "-f", str(staged)])
            if proc.returncode != 0:
                raise SshdError("visudo rejects the sudoers line: %s" % (proc.stderr or proc.stdout).strip())
        shutil.copy2(staged, self.sudoers_file)
        os.chown(self.sudoers_file, 0, 0)
        self.sudoers_file.chmod(0o440)

    def _launch(self, timeout):
        log = open(self.log_file, "ab")
        try:
            # -D: stay in the foreground (its PID is ours); -e: log to stderr (the log file).
            self.process = subprocess.Popen([self.sshd, "-D", "-e", "-f", str(self.config_file)],
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True, close_fds=True)
        finally:
            log.close()
        self.pid = self.process.pid
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise SshdError("sshd exited with %s; log:\n%s" % (self.process.returncode, self.log_tail()))
            try:
                with socket.create_connection((HOST, self.port), timeout=2) as sock:
                    sock.settimeout(5)
                    if sock.recv(64).startswith(b"SSH-2.0-"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SshdError("sshd did not answer on %s:%d within %s s; log:\n%s"
                                % (HOST, self.port, timeout, self.log_tail()))
            time.sleep(0.05)
        # One real login with become, as Ansible will do it.
        proc = self.ssh("sudo", "-n", "true", timeout=60)
        if proc.returncode != 0:
            raise SshdError("ssh %s@%s -p %d 'sudo -n true' failed (%s): %s\nsshd log:\n%s"
                            % (self.user, HOST, self.port, proc.returncode, proc.stderr.strip(), self.log_tail()))

    def stop(self, grace: float = 5.0) -> None:
        """Stop sshd and every process descended from it now (connections, sessions), then clean up."""
        if self.pid and pid_alive(self.pid):
            # The listener first (no new connections), then what it forked: looked up now, not at start.
            victims = [self.pid] + descendants(self.pid)
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 10.0)):
                for pid in victims:
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline:
                    if self.process is not None:
                        self.process.poll()
                    victims = [pid for pid in victims if pid_alive(pid)]
                    if not victims:
                        break
                    time.sleep(0.05)
                if not victims:
                    break
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.process = None
        self.pid = None
        try:
            # only the file this server wrote (a user's own sudoers file is left alone)
            if self.sudoers_file.exists() and "tests/support/sshd.py" in self.sudoers_file.read_text():
                self.sudoers_file.unlink()
        except OSError:
            pass
        if self._made_run_sshd:
            try:
                os.rmdir("/run/sshd")
            except OSError:
                pass
            self._made_run_sshd = False
        if self._own_dir and self.dir is not None and self.dir.exists():
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- clients --------------------------------------------------------------------------------------------
    def ssh_options(self) -> list:
        """Client options: this server's key only, strict host key checking against our known_hosts."""
        return ["-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=%s" % self.known_hosts,
                "-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
                "-o", "PasswordAuthentication=no"]

    def ssh(self, *command, timeout: float = 60):
        """Run ``command`` on the server as the login user; the CompletedProcess."""
        argv = ["ssh", "-p", str(self.port), "-i", str(self.key_file)] + self.ssh_options() + \
               ["-o", "ControlMaster=no", "%s@%s" % (self.user, HOST), "--"] + list(command)
        return _run(argv, timeout=timeout, stdin=subprocess.DEVNULL)

    def inventory_vars(self) -> dict:
        """Host variables for Ansible's ssh connection to this server (strict host key checking)."""
        return {
            "ansible_connection": "ssh",
            "ansible_host": HOST,
            "ansible_port": self.port,
            "ansible_user": self.user,
            "ansible_ssh_private_key_file": str(self.key_file),
            "ansible_host_key_checking": True,
            "ansible_ssh_common_args": " ".join(self.ssh_options()),
        }

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
