"""A throwaway PostgreSQL server: the one place in the project that starts and stops one.

Used by the test suite, the README's demo and ``python -m neon_proxy dev``. It needs only the
server binaries (``initdb`` and ``postgres``): roles are created in single-user mode before the
server starts, so no client (``psql``, a driver) is involved. Tuned for speed, not durability.
"""

from __future__ import annotations

import glob
import ipaddress
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final
from urllib.parse import quote

import attrs

from neon_proto.pyformat import quote_identifier

__all__ = ["AUTH_METHODS", "EmbeddedPostgres", "PostgresNotFound", "Role", "remove_orphans"]

log = logging.getLogger(__name__)

#: The pg_hba.conf methods a :class:`Role` may use.
AUTH_METHODS: Final = frozenset({"trust", "password", "md5", "scram-sha-256"})

_REQUIRED_PROGRAMS: Final = ("initdb", "postgres")
_START_TIMEOUT: Final = 60.0
_FAST_SHUTDOWN_TIMEOUT: Final = 15.0
_LOG_TAIL_LINES: Final = 40
# sun_path is 108 bytes on Linux and 104 on macOS, and the socket name takes ~17 of them.
_MAX_SOCKET_DIR_LEN: Final = 80
_PORT_ATTEMPTS: Final = 3
_LOOPBACK_NETWORKS: Final = ("127.0.0.1/32", "::1/128")


class PostgresNotFound(RuntimeError):
    """The PostgreSQL server binaries (``initdb``, ``postgres``) could not be found."""


def _check_role_name(instance: Role, attribute: attrs.Attribute[str], value: str) -> None:
    # Names are written double-quoted into pg_hba.conf, which has no escape for '"'.
    if not value or any(c == '"' or c.isspace() or not c.isprintable() for c in value):
        raise ValueError(f"role name {value!r} must be non-empty, without '\"', spaces or control characters")


def _check_auth(instance: Role, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in AUTH_METHODS:
        raise ValueError(f"auth must be one of {sorted(AUTH_METHODS)}, not {value!r}")


@attrs.frozen
class Role:
    """A login role and the pg_hba.conf method its host connections must use.

    The password is stored the way the method needs it: as an MD5 hash for ``md5`` (so the
    server really runs MD5 rather than upgrading to SCRAM), as a SCRAM verifier otherwise.
    """

    name: str = attrs.field(validator=_check_role_name)
    password: str | None
    auth: str = attrs.field(validator=_check_auth)


def _random_password() -> str:
    return secrets.token_urlsafe(18)


def _default_roles() -> tuple[Role, ...]:
    return (
        Role("trust_user", _random_password(), "trust"),
        Role("cleartext_user", _random_password(), "password"),
        Role("md5_user", _random_password(), "md5"),
        Role("scram_user", _random_password(), "scram-sha-256"),
    )


def _missing_programs(directory: str) -> list[str]:
    return [p for p in _REQUIRED_PROGRAMS if not os.access(os.path.join(directory, p), os.X_OK)]


def _pg_config_bindir() -> str | None:
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _find_bindir(bindir: str | None) -> str:
    """The directory holding initdb and postgres: argument, $PG_BINDIR, PATH, pg_config, usual places."""
    hint = (
        "Install the PostgreSQL server (e.g. `apt-get install postgresql`, `brew install postgresql`), "
        "then put its bin directory on PATH, or set PG_BINDIR, or pass bindir=."
    )
    for explicit, origin in ((bindir, "bindir argument"), (os.environ.get("PG_BINDIR"), "PG_BINDIR")):
        if explicit:
            missing = _missing_programs(explicit)
            if missing:
                raise PostgresNotFound(f"{', '.join(missing)} not found in {explicit!r} (from {origin}). {hint}")
            return explicit
    candidates: list[str] = []
    postgres_on_path = shutil.which("postgres")
    if postgres_on_path is not None:
        candidates.append(os.path.dirname(postgres_on_path))
    from_pg_config = _pg_config_bindir()
    if from_pg_config is not None:
        candidates.append(from_pg_config)
    # Debian and Ubuntu keep the server off PATH; prefer the newest major version.
    debian = glob.glob("/usr/lib/postgresql/*/bin")
    debian.sort(key=lambda d: int(v) if (v := d.split("/")[-2]).isdigit() else 0, reverse=True)
    candidates += [*debian, "/usr/local/pgsql/bin"]
    for candidate in candidates:
        if not _missing_programs(candidate):
            return candidate
    raise PostgresNotFound(f"PostgreSQL server binaries (initdb, postgres) not found. {hint}")


def _pick_free_port(host: str) -> int:
    family, type_, proto, _, address = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, type_, proto) as sock:
        sock.bind(address)
        port: int = sock.getsockname()[1]
        return port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _quote_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _tail(path: str, lines: int = _LOG_TAIL_LINES, offset: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError as exc:
        return f"(log {path} unreadable: {exc})"
    return "\n".join(text.splitlines()[-lines:])


def _write_tls_files(hosts: Sequence[str], ca_cert_path: str, cert_path: str, key_path: str) -> None:
    """A fresh CA and a server certificate it signs, valid for ``hosts`` (names and IPs)."""
    try:
        import datetime

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as exc:
        raise RuntimeError(
            "EmbeddedPostgres(tls=True) needs the cryptography package: `pip install cryptography` "
            "(or pass tls=False)"
        ) from exc

    now = datetime.datetime.now(datetime.timezone.utc)
    not_before, not_after = now - datetime.timedelta(hours=1), now + datetime.timedelta(days=365)
    # EC keys: generated in microseconds where RSA takes a noticeable part of a fixture's start.
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "neon embedded PostgreSQL test CA")])
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=True, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def write(path: str, data: bytes, mode: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(path, mode)  # the umask may have narrowed it

    write(ca_cert_path, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    write(cert_path, server_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write(key_path, key_pem, 0o600)


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    """Fast shutdown (SIGINT); immediate (SIGQUIT), then SIGKILL, if the server lingers."""
    if process.poll() is not None:
        return
    for sig, timeout in ((signal.SIGINT, _FAST_SHUTDOWN_TIMEOUT), (signal.SIGQUIT, 5.0), (signal.SIGKILL, None)):
        process.send_signal(sig)
        try:
            process.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            log.warning("PostgreSQL (pid %d) ignored %s", process.pid, sig.name)


# -- orphans: servers whose owner died without stopping them (SIGKILL, a crash) ------------

_OWNER_FILE: Final = "owner"
_WORK_DIR_PREFIX: Final = "neon-pg-"


def _process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a live owner from a reused pid); None if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[19] if len(fields) > 19 else None


def _process_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not count)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _write_owner_file(work_dir: str) -> None:
    pid = os.getpid()
    with open(os.path.join(work_dir, _OWNER_FILE), "w", encoding="ascii") as f:
        f.write(f"{pid} {_process_start_time(pid) or '-'}\n")


def _owner_alive(work_dir: str) -> bool | None:
    """Whether the process that made ``work_dir`` still runs; None when the directory has no owner file."""
    try:
        with open(os.path.join(work_dir, _OWNER_FILE), encoding="ascii") as f:
            pid_text, _, started = f.read().strip().partition(" ")
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if not _process_alive(pid):
        return False
    return started in ("-", "") or _process_start_time(pid) in (None, started)


def _stop_orphan_postmaster(data_dir: str) -> None:
    """Immediate shutdown of the server running in ``data_dir`` (if it still runs)."""
    try:
        with open(os.path.join(data_dir, "postmaster.pid"), encoding="utf-8") as f:
            lines = f.read().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return
    if len(lines) < 2 or os.path.realpath(lines[1]) != os.path.realpath(data_dir) or not _process_alive(pid):
        return
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmdline = f.read()
        if b"postgres" not in cmdline:
            return  # the pid was reused by something else
    except OSError:
        pass  # no /proc: postmaster.pid naming this data directory is the evidence
    for sig, wait in ((signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while _process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if not _process_alive(pid):
            return


def remove_orphans(parent_dir: str | None = None) -> list[str]:
    """Stop and delete throwaway servers whose owning process died (killed with SIGKILL, say).

    Looks at the ``neon-pg-*`` directories in ``parent_dir`` (default: the system's temporary
    directory) that carry an owner file naming a process that no longer runs. Servers of live
    owners, and directories without an owner file, are left alone. Returns what was removed.
    """
    parent = parent_dir or tempfile.gettempdir()
    removed = []
    for work_dir in glob.glob(os.path.join(glob.escape(parent), _WORK_DIR_PREFIX + "*")):
        if _owner_alive(work_dir) is not False:
            continue
        _stop_orphan_postmaster(os.path.join(work_dir, "data"))
        shutil.rmtree(work_dir, ignore_errors=True)
        if not os.path.exists(work_dir):
            log.info("removed the orphaned PostgreSQL directory %s (its owner process is gone)", work_dir)
            removed.append(work_dir)
    return removed


@attrs.define
class _Resources:
    """What must be released even if the EmbeddedPostgres is never stopped (see weakref.finalize)."""

    work_dir: str
    process: subprocess.Popen[bytes] | None = None


def _release(resources: _Resources) -> None:
    if resources.process is not None:
        _stop_process(resources.process)
        resources.process = None

    def report(function: Any, path: str, exc: BaseException) -> None:
        log.warning("could not remove %s: %s", path, exc)

    if sys.version_info >= (3, 12):
        shutil.rmtree(resources.work_dir, onexc=report)
    else:
        shutil.rmtree(resources.work_dir, onerror=lambda f, p, info: report(f, p, info[1]))


class EmbeddedPostgres:
    """A PostgreSQL server in a temporary directory, with TLS and one role per auth method.

    ``start()`` runs initdb, creates the roles in single-user mode, then starts ``postgres`` and
    waits until it accepts connections; ``stop()`` shuts it down and deletes everything. When run
    as root, the server runs as ``nobody`` (PostgreSQL refuses root). An instance that is never
    stopped is stopped at garbage collection or interpreter exit, so no server is left behind;
    one whose owner was killed outright (SIGKILL) is stopped and deleted by the next ``start()``
    in the same parent directory (``remove_orphans``).
    """

    superuser: Final = "postgres"

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        tls: bool = True,
        superuser_password: str | None = None,
        roles: Sequence[Role] | None = None,
        base_dir: str | None = None,
        log_statements: bool = False,
        bindir: str | None = None,
    ) -> None:
        """Configure only; nothing touches the disk or the network before ``start()``.

        ``port`` defaults to a free port picked at start; ``superuser_password`` to a random one;
        ``roles`` to trust_user, cleartext_user, md5_user and scram_user. ``base_dir`` is the
        parent of the temporary directory (default: the system's, e.g. /tmp); ``bindir`` holds
        initdb and postgres (default: $PG_BINDIR, PATH, ``pg_config --bindir``).
        """
        self.host = host
        self.tls = tls
        self.log_statements = log_statements
        self._requested_port = port
        self._port = port
        self._parent_dir = base_dir
        self._bindir_arg = bindir
        password = superuser_password if superuser_password is not None else _random_password()
        self._roles: dict[str, Role] = {self.superuser: Role(self.superuser, password, "scram-sha-256")}
        for role in _default_roles() if roles is None else roles:
            if role.name in self._roles:
                raise ValueError(f"role {role.name!r} given twice (or clashes with the superuser)")
            self._roles[role.name] = role
        self._resources: _Resources | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._bindir: str | None = None

    # -- where things are -------------------------------------------------------------------

    def _started_resources(self) -> _Resources:
        if self._resources is None:
            raise RuntimeError("EmbeddedPostgres is not started")
        return self._resources

    @property
    def port(self) -> int:
        """The TCP port; picked at ``start()`` unless given."""
        if self._port is None:
            raise RuntimeError("EmbeddedPostgres is not started: no port picked yet")
        return self._port

    @property
    def superuser_password(self) -> str:
        """The password of ``postgres`` (scram-sha-256)."""
        password = self._roles[self.superuser].password
        assert password is not None
        return password

    @property
    def work_dir(self) -> str:
        """The temporary directory holding everything (data dir, ca.crt); removed by ``stop()``."""
        return self._started_resources().work_dir

    @property
    def data_dir(self) -> str:
        """The cluster's data directory (PGDATA)."""
        return os.path.join(self.work_dir, "data")

    @property
    def log_path(self) -> str:
        """The server's log (its stdout and stderr), in the data directory."""
        return os.path.join(self.data_dir, "postgres.log")

    @property
    def socket_dir(self) -> str | None:
        """The Unix socket's directory (the data dir), or None if its path is too long for one."""
        directory = self.data_dir
        return directory if len(directory) <= _MAX_SOCKET_DIR_LEN else None

    @property
    def ca_cert_path(self) -> str | None:
        """PEM of the CA that signed the server certificate, for ``sslrootcert``; None without TLS."""
        return os.path.join(self.work_dir, "ca.crt") if self.tls else None

    @property
    def server_cert_path(self) -> str | None:
        """The server certificate (SAN: localhost, 127.0.0.1, ::1 and the host); None without TLS."""
        return os.path.join(self.data_dir, "server.crt") if self.tls else None

    @property
    def server_key_path(self) -> str | None:
        """The server's private key (mode 0600, owned by the server's user); None without TLS."""
        return os.path.join(self.data_dir, "server.key") if self.tls else None

    @property
    def pid(self) -> int | None:
        """The postmaster's process id, or None when the server is not running."""
        process = self._resources.process if self._resources is not None else None
        return process.pid if process is not None and process.poll() is None else None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.pid is not None

    @property
    def roles(self) -> tuple[Role, ...]:
        """Every role created at start, the superuser first."""
        return tuple(self._roles.values())

    def role(self, name: str) -> Role:
        """The role called ``name`` (including the superuser), with its password and auth method."""
        try:
            return self._roles[name]
        except KeyError:
            raise KeyError(f"no role {name!r}; known roles: {', '.join(self._roles)}") from None

    def dsn(self, user: str | None = None, password: str | None = None, database: str = "postgres", **params: str) -> str:
        """A ``postgresql://`` URI; the password defaults to the role's own. ``params`` form the query."""
        if user is None:
            user = self.superuser
        if password is None and user in self._roles:
            password = self._roles[user].password
        userinfo = quote(user, safe="")
        if password is not None:
            userinfo += ":" + quote(password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        uri = f"postgresql://{userinfo}@{host}:{self.port}/{quote(database, safe='')}"
        if params:
            # libpq decodes %XX but not '+', so spaces must not be written as '+'.
            uri += "?" + "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
        return uri

    # -- running as someone who is not root ---------------------------------------------------

    @staticmethod
    def _server_user() -> tuple[int, int] | None:
        """(uid, gid) to run the server as, or None to run as ourselves."""
        if os.geteuid() != 0:
            return None
        import pwd

        try:
            nobody = pwd.getpwnam("nobody")
        except KeyError:
            raise RuntimeError("running as root, but there is no user 'nobody' to run PostgreSQL as") from None
        return nobody.pw_uid, nobody.pw_gid

    def _as_server_user(self) -> dict[str, Any]:
        user = self._server_user()
        if user is None:
            return {}
        return {"user": user[0], "group": user[1], "extra_groups": []}

    def _give_to_server_user(self, *paths: str) -> None:
        user = self._server_user()
        if user is not None:
            for path in paths:
                os.chown(path, *user)

    @staticmethod
    def _child_env() -> Mapping[str, str]:
        env = {"LC_ALL": "C", "LANG": "C", "TZ": "UTC", "PATH": os.environ.get("PATH", os.defpath)}
        if "LD_LIBRARY_PATH" in os.environ:
            env["LD_LIBRARY_PATH"] = os.environ["LD_LIBRARY_PATH"]
        return env

    def _run(self, argv: Sequence[str], stdin: str | None = None) -> None:
        log.debug("running %s", argv)
        result = subprocess.run(
            argv,
            input=stdin,
            capture_output=True,
            text=True,
            cwd=self.work_dir,
            env=self._child_env(),
            timeout=120,
            **self._as_server_user(),
        )
        if result.returncode != 0:
            output = "\n".join((result.stdout + result.stderr).splitlines()[-_LOG_TAIL_LINES:])
            if "Permission denied" in output and self._server_user() is not None:
                output += (
                    "\n(we run as root, so PostgreSQL runs as 'nobody': base_dir and every directory "
                    "above it must be searchable by nobody)"
                )
            raise RuntimeError(f"{os.path.basename(argv[0])} failed (exit code {result.returncode}):\n{output}")

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> EmbeddedPostgres:
        """Create the cluster if needed and start the server; return once it accepts connections."""
        if self.running:
            return self
        if self._resources is not None:  # stopped by restart() or died: keep the data
            self._launch(retry_ports=False)
            return self
        begun = time.monotonic()
        self._bindir = _find_bindir(self._bindir_arg)
        remove_orphans(self._parent_dir)
        self._resources = _Resources(tempfile.mkdtemp(prefix=_WORK_DIR_PREFIX, dir=self._parent_dir))
        self._finalizer = weakref.finalize(self, _release, self._resources)
        try:
            _write_owner_file(self._resources.work_dir)
            self._create_cluster()
            self._launch(retry_ports=self._requested_port is None)
        except BaseException:
            self.stop()
            raise
        log.info(
            "PostgreSQL started on %s:%d in %.2fs (data %s, tls=%s)",
            self.host, self.port, time.monotonic() - begun, self.data_dir, self.tls,
        )
        return self

    def stop(self) -> None:
        """Shut the server down (fast shutdown) and delete its directory; safe to call again."""
        if self._finalizer is not None:
            self._finalizer()  # runs _release at most once
            log.info("PostgreSQL on %s:%s stopped and removed", self.host, self._port)
        self._finalizer = None
        self._resources = None
        self._port = self._requested_port

    def shutdown(self) -> None:
        """Stop the server process but keep its data directory and port; ``start()`` brings it back."""
        resources = self._resources
        if resources is not None and resources.process is not None:
            _stop_process(resources.process)
            resources.process = None
            log.info("PostgreSQL on %s:%d shut down (data kept)", self.host, self.port)

    def restart(self) -> None:
        """Stop and start the server, keeping its data directory and port."""
        resources = self._resources
        if resources is None:
            self.start()
            return
        if resources.process is not None:
            _stop_process(resources.process)
            resources.process = None
        self._launch(retry_ports=False)
        log.info("PostgreSQL on %s:%d restarted", self.host, self.port)

    def __enter__(self) -> EmbeddedPostgres:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<EmbeddedPostgres {self.host}:{self._port} {state}>"

    # -- the steps of start() -----------------------------------------------------------------

    def _program(self, name: str) -> str:
        assert self._bindir is not None
        return os.path.join(self._bindir, name)

    def _create_cluster(self) -> None:
        work_dir = self.work_dir
        # Readable by all so that ca.crt is; the data directory inside stays 0700.
        os.chmod(work_dir, 0o755)
        self._give_to_server_user(work_dir)
        self._run([
            self._program("initdb"), "--pgdata", self.data_dir, "--username", self.superuser,
            "--auth", "trust", "--encoding", "UTF8", "--locale", "C", "--no-sync",
        ])
        if self.tls:
            assert self.ca_cert_path and self.server_cert_path and self.server_key_path
            hosts = ["localhost", "127.0.0.1", "::1"]
            if self.host not in hosts:
                hosts.append(self.host)
            _write_tls_files(hosts, self.ca_cert_path, self.server_cert_path, self.server_key_path)
            self._give_to_server_user(self.server_cert_path, self.server_key_path)
        with open(os.path.join(self.data_dir, "postgresql.conf"), "a", encoding="utf-8") as conf:
            conf.write(self._config())
        with open(os.path.join(self.data_dir, "pg_hba.conf"), "w", encoding="utf-8") as hba:
            hba.write(self._hba())
        # Roles are cluster-wide, the schema grant is per database: template1 passes it on to
        # databases created later, and postgres was copied from template1 before the grant.
        role_sql = self._role_sql()
        grant = "GRANT ALL ON SCHEMA public TO PUBLIC"
        self._single_user("template1", [*role_sql, grant])
        self._single_user("postgres", [grant])

    def _config(self) -> str:
        settings: dict[str, str | int] = {
            "max_connections": 200,
            "max_prepared_transactions": 20,  # two-phase commit (the DB-API's tpc_* methods)
            "shared_buffers": "32MB",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "password_encryption": "scram-sha-256",
            "timezone": "UTC",
            "log_timezone": "UTC",
            "lc_messages": "C",
            "log_line_prefix": "%m [%p] %q%u@%d ",
        }
        if self.tls:
            settings.update(ssl="on", ssl_cert_file="server.crt", ssl_key_file="server.key")
        if self.log_statements:
            settings["log_statement"] = "all"
        lines = ["", "# neon_sync.embedded: a throwaway server, tuned for speed over durability."]
        lines += [f"{k} = {v if isinstance(v, int) else _quote_literal(v)}" for k, v in settings.items()]
        return "\n".join(lines) + "\n"

    def _hba(self) -> str:
        addresses = list(_LOOPBACK_NETWORKS)
        if not _is_loopback(self.host):
            addresses.append("samehost")
        lines = [
            "# neon_sync.embedded: one line per role and method; `host` admits TLS and plain TCP.",
            "# The Unix socket lives in the 0700 data directory, reachable only by its owner and root.",
            "local all all trust",
        ]
        for role in self._roles.values():
            lines += [f"host all {quote_identifier(role.name)} {a} {role.auth}" for a in addresses]
        lines += [f"host all all {a} scram-sha-256" for a in addresses]  # roles that tests create
        return "\n".join(lines) + "\n"

    def _role_sql(self) -> list[str]:
        statements = []
        for role in self._roles.values():
            encryption = "md5" if role.auth == "md5" else "scram-sha-256"
            statements.append(f"SET password_encryption = {_quote_literal(encryption)}")
            password = "NULL" if role.password is None else _quote_literal(role.password)
            if role.name == self.superuser:
                statements.append(f"ALTER ROLE {quote_identifier(role.name)} PASSWORD {password}")
            else:
                statements.append(f"CREATE ROLE {quote_identifier(role.name)} LOGIN CREATEDB PASSWORD {password}")
        return statements

    def _single_user(self, database: str, statements: Sequence[str]) -> None:
        """Run SQL in single-user mode: no server, no client, no network needed."""
        script = "".join(f"{s};\n\n" for s in statements)  # -j: a statement ends at ';' + blank line
        self._run(
            [
                self._program("postgres"), "--single", "-j", "-D", self.data_dir,
                # An error ends the session with a non-zero exit; never echo statements (passwords).
                "-c", "exit_on_error=on", "-c", "log_min_error_statement=panic",
                database,
            ],
            stdin=script,
        )

    def _launch(self, *, retry_ports: bool) -> None:
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if self._port is None:
                self._port = _pick_free_port(self.host)
            try:
                self._launch_once()
                return
            except _PortInUse:
                if not retry_ports or attempt == _PORT_ATTEMPTS:
                    raise
                log.info("port %d was taken before PostgreSQL could bind it; picking another", self._port)
                self._port = None

    def _launch_once(self) -> None:
        resources = self._started_resources()
        log_path = self.log_path
        log_offset = os.path.getsize(log_path) if os.path.exists(log_path) else 0
        argv = [
            self._program("postgres"), "-D", self.data_dir, "-p", str(self.port),
            "-c", f"listen_addresses={self.host}",
            "-c", f"unix_socket_directories={self.socket_dir or ''}",
        ]
        log.debug("starting %s", argv)
        with open(log_path, "ab") as log_file:
            self._give_to_server_user(log_path)
            resources.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.work_dir,
                env=self._child_env(),
                start_new_session=True,  # a Ctrl-C in the terminal reaches us, and we stop it
                **self._as_server_user(),
            )
        process = resources.process
        deadline = time.monotonic() + _START_TIMEOUT
        while not self._ready(process.pid):
            if process.poll() is not None or time.monotonic() > deadline:
                _stop_process(process)
                resources.process = None
                tail = _tail(log_path, offset=log_offset)
                error = _PortInUse if "could not bind" in tail or "could not create any TCP/IP" in tail else RuntimeError
                raise error(
                    f"PostgreSQL did not start on {self.host}:{self.port} "
                    f"(exit code {process.returncode}); end of {log_path}:\n{tail}"
                )
            time.sleep(0.01)

    def _ready(self, pid: int) -> bool:
        """Whether postmaster.pid says this server accepts connections (what pg_ctl checks)."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid"), encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError:
            return False
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"


class _PortInUse(RuntimeError):
    """The server could not bind its port (someone took it after we picked it)."""
