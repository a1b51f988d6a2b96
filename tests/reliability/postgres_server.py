"""A throwaway PostgreSQL server for tests: initdb + pg_ctl in a temp folder, unix socket only.

PostgreSQL refuses to run as root, so as root the server runs as `nobody` in a folder it owns.
`start_postgres()` returns (SQLAlchemy URL, stop function), or raises `Unavailable` with the reason.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Callable

from reliability_helpers import HANG_GUARD_S


class Unavailable(Exception):
    """No PostgreSQL server binary or driver on this machine (the reason is the message)."""


def _server_bin() -> str:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")) + [shutil.which("pg_ctl") or ""]
    for pg_ctl in candidates:
        folder = os.path.dirname(pg_ctl)
        if pg_ctl and os.path.isfile(os.path.join(folder, "initdb")) and os.path.isfile(os.path.join(folder, "postgres")):
            return folder
    raise Unavailable("no PostgreSQL server binaries (initdb, pg_ctl, postgres) on this machine")


def start_postgres() -> tuple[str, Callable[[], None]]:
    try:
        import psycopg2  # noqa: F401  (SQLAlchemy's default PostgreSQL driver)
    except ImportError:
        raise Unavailable("psycopg2 is not installed: pip install 'satdiffmoe[postgres]'") from None
    folder_bin = _server_bin()
    # Short path: the socket name must fit in 107 bytes.
    root = tempfile.mkdtemp(prefix="sdm-pg-", dir="/tmp")
    as_user: list[str] = []
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(root, nobody.pw_uid, nobody.pw_gid)
        as_user = ["runuser", "-u", "nobody", "--"]
    data = os.path.join(root, "data")

    def run(*args: str) -> None:
        result = subprocess.run(as_user + list(args), capture_output=True, text=True, timeout=HANG_GUARD_S, check=False)
        if result.returncode != 0:
            raise Unavailable(f"{os.path.basename(args[0])} failed: {(result.stderr or result.stdout).strip()[-300:]}")

    run(os.path.join(folder_bin, "initdb"), "-D", data, "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
    run(os.path.join(folder_bin, "pg_ctl"), "-D", data, "-l", os.path.join(root, "server.log"), "-w", "-o",
        f"-k {root} -c listen_addresses='' -c fsync=off -c max_connections=100", "start")

    def stop() -> None:
        subprocess.run(as_user + [os.path.join(folder_bin, "pg_ctl"), "-D", data, "-m", "immediate", "stop"],
                       capture_output=True, timeout=HANG_GUARD_S, check=False)
        shutil.rmtree(root, ignore_errors=True)

    return f"postgresql+psycopg2://postgres@/postgres?host={root}", stop
