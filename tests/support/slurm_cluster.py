"""A real single-node SLURM cluster on localhost, for tests: Debian's slurm-wlm 22.05 + munge + slurmdbd.

Everything (config, state, logs, database, sockets) lives in one temporary folder; client commands
find it through SLURM_CONF. No systemd and no cgroups are needed: the daemons run in the
foreground as children of this process (their PIDs are kept, and only those are stopped), with
proctrack/linuxproc and task/affinity. The node declares GPUs as GRES backed by character devices
(copies of /dev/null), so `--gpus` / `--gres=gpu` requests schedule and set CUDA_VISIBLE_DEVICES.
Accounting (slurmdbd on its own MariaDB on loopback) gives sacct/sacctmgr as on a real cluster.

    with SlurmCluster() as cluster:
        cluster.run(["sbatch", "--wrap", "hostname"])
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

PACKAGES = ["slurmctld", "slurmd", "slurmdbd", "slurm-client", "munge", "mariadb-server"]
BINARIES = ["slurmctld", "slurmd", "slurmdbd", "sbatch", "sacct", "sacctmgr", "munged",
            "mariadbd", "mariadb-install-db", "mariadb"]
ACCOUNT = "cellscale"
PORT_BASE = int(os.environ.get("CELLSCALE_SLURM_PORT_BASE", "6817"))  # slurmctld, slurmd, slurmdbd, MariaDB


class ClusterError(RuntimeError):
    pass


def _which(name: str) -> str | None:
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def missing_binaries() -> list[str]:
    return [b for b in BINARIES if _which(b) is None]


def install_packages(timeout: int = 900) -> None:
    """apt-get install the cluster's Debian packages (root, no stdin, services not auto-started)."""
    if not missing_binaries():
        return
    if os.geteuid() != 0 or _which("apt-get") is None:
        raise ClusterError(f"missing {missing_binaries()} and cannot install them (needs root and apt-get): "
                           f"apt-get install {' '.join(PACKAGES)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    # keep package scripts from starting system-wide daemons (we start our own, in a temp folder)
    policy = Path("/usr/sbin/policy-rc.d")
    created_policy = not policy.exists()
    if created_policy:
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
    try:
        for cmd in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]):
            result = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                    timeout=timeout)
            if result.returncode != 0:
                raise ClusterError(f"{' '.join(cmd)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    finally:
        if created_policy:
            policy.unlink()
    if missing_binaries():
        raise ClusterError(f"still missing after apt-get install: {missing_binaries()}")


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("0.0.0.0", port))
        except OSError:
            return True
    return False


class SlurmCluster:
    """One node (`cpus`, `memory_mb`, `gpus` fake GPUs) in two partitions, `cpu` (default) and `gpu`."""

    def __init__(self, cpus: int = 8, memory_mb: int = 32000, gpus: int = 2, root: Path | None = None):
        self.cpus, self.memory_mb, self.gpus = cpus, memory_mb, gpus
        self.root = Path(root or tempfile.mkdtemp(prefix="cellscale-slurm-"))
        self.node = socket.gethostname().split(".")[0]
        self.ports = {"slurmctld": PORT_BASE, "slurmd": PORT_BASE + 1, "slurmdbd": PORT_BASE + 2,
                      "mariadb": PORT_BASE + 3}
        self.procs: dict[str, subprocess.Popen] = {}
        self.conf = self.root / "etc" / "slurm.conf"

    # ---- environment for client commands and for Snakemake (jobs inherit it through sbatch --export=ALL)
    @property
    def env(self) -> dict[str, str]:
        return dict(os.environ, SLURM_CONF=str(self.conf),
                    PATH=f"{self.root / 'bin'}:{os.environ.get('PATH', '')}:/usr/sbin:/sbin")

    def run(self, cmd: list[str], timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
        """A SLURM client command; bounded, because srun/sbatch against a broken node wait silently."""
        try:
            result = subprocess.run(cmd, env=self.env, capture_output=True, text=True, timeout=timeout,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as err:
            raise ClusterError(f"{' '.join(cmd)} did not answer in {timeout} s\n{self.log_tails()}") from err
        if check and result.returncode != 0:
            raise ClusterError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stderr}\n{self.log_tails()}")
        return result

    # ---- lifecycle
    def __enter__(self) -> "SlurmCluster":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop(remove=exc[0] is None)

    def start(self, timeout: float = 60) -> None:
        install_packages()
        taken = {name: port for name, port in self.ports.items() if _port_in_use(port)}
        if taken:
            raise ClusterError(
                f"ports already in use: {taken}. Another SLURM (or a test cluster left running) holds them; "
                f"stop it, or set CELLSCALE_SLURM_PORT_BASE to a free range of 4 ports.")
        self._write_files()
        self._start_munge(timeout)
        self._start_database(timeout)
        self._spawn("slurmdbd", ["slurmdbd", "-D"])
        self._wait(lambda: _port_in_use(self.ports["slurmdbd"]), "slurmdbd to listen", timeout)
        for cmd in (["sacctmgr", "-i", "add", "cluster", "cellscale"],
                    ["sacctmgr", "-i", "add", "account", ACCOUNT, "Description=tests", "Organization=cellscale"],
                    ["sacctmgr", "-i", "add", "user", "root", f"Account={ACCOUNT}"]):
            self.run(cmd)
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(self.conf)])
        self._wait(lambda: self.run(["scontrol", "ping"], check=False).returncode == 0, "slurmctld", timeout)
        self._spawn("slurmd", ["slurmd", "-D", "-f", str(self.conf), "-N", self.node])
        self._wait(self._node_up, "the node to be idle", timeout)

    def _node_up(self) -> bool:
        states = set(self.run(["sinfo", "-h", "-N", "-o", "%T"], check=False).stdout.split())
        return bool(states) and states <= {"idle", "mixed", "allocated"}

    def stop(self, remove: bool = True) -> None:
        """Cancel jobs, then stop the daemons this object started (by PID), newest first."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            try:
                self.run(["scancel", "--user", "root"], timeout=15, check=False)
                self._wait(lambda: not self.run(["squeue", "-h", "-t", "PD,R,CG"], timeout=10).stdout.strip(),
                           "jobs to end", 30)
            except ClusterError:
                pass
        for name in reversed(list(self.procs)):
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
        self.procs.clear()
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)

    # ---- queries
    def jobs(self, workdir: Path | None = None) -> list[dict[str, str]]:
        """Accounting rows (sacct, allocations only) of this cluster's jobs, optionally of one workdir."""
        fields = ["JobIDRaw", "JobName", "Partition", "State", "Comment", "WorkDir", "AllocTRES",
                  "Submit", "Start", "End", "Elapsed", "ExitCode"]
        out = self.run(["sacct", "-X", "--parsable2", "--noheader", "--starttime", "now-1day",
                        "--format", ",".join(f"{f}%500" for f in fields)]).stdout
        rows = [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]
        if workdir is not None:
            rows = [r for r in rows if Path(r["WorkDir"]).resolve() == Path(workdir).resolve()]
        return rows

    def queue(self) -> list[dict[str, str]]:
        fields = ["JobID", "Partition", "State", "Comment", "WorkDir"]
        out = self.run(["squeue", "-h", "--format", "%i|%P|%T|%k|%Z"]).stdout
        return [dict(zip(fields, line.split("|"))) for line in out.splitlines() if line]

    def log_tails(self, lines: int = 15) -> str:
        parts = []
        for log in sorted((self.root / "log").glob("*")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ---- internals
    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / "log" / f"{name}.out", "w")
        self.procs[name] = subprocess.Popen(cmd, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        out.close()

    def _wait(self, ready, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise ClusterError(f"{dead} exited while waiting for {what}\n{self.log_tails()}")
            try:
                if ready():
                    return
            except (ClusterError, OSError):
                pass
            time.sleep(0.3)
        raise ClusterError(f"timed out after {timeout} s waiting for {what}\n{self.log_tails()}")

    def _start_munge(self, timeout: float) -> None:
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self._spawn("munged", ["munged", "--foreground", f"--key-file={key}", f"--socket={self.munge_socket}",
                               f"--pid-file={self.root / 'run' / 'munged.pid'}",
                               f"--log-file={self.root / 'log' / 'munged.log'}",
                               f"--seed-file={self.root / 'munge' / 'munged.seed'}"])
        self._wait(self.munge_socket.exists, "munged", timeout)

    def _start_database(self, timeout: float) -> None:
        datadir = self.root / "mysql"
        result = subprocess.run(["mariadb-install-db", "--no-defaults", f"--datadir={datadir}", "--user=root",
                                 "--auth-root-authentication-method=socket", "--skip-test-db"],
                                capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed: {result.stdout[-1500:]}{result.stderr[-1500:]}")
        sock = self.root / "run" / "mysql.sock"
        self._spawn("mariadbd", ["mariadbd", "--no-defaults", f"--datadir={datadir}", f"--socket={sock}",
                                 f"--port={self.ports['mariadb']}", "--bind-address=127.0.0.1", "--user=root",
                                 f"--pid-file={self.root / 'run' / 'mysqld.pid'}", "--skip-log-bin",
                                 f"--log-error={self.root / 'log' / 'mariadb.log'}",
                                 "--innodb-buffer-pool-size=64M", "--innodb-lock-wait-timeout=900"])
        self._wait(sock.exists, "MariaDB", timeout)
        sql = ("CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; "
               "GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';")
        result = subprocess.run(["mariadb", "--no-defaults", f"--socket={sock}", "-u", "root", "-e", sql],
                                capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            raise ClusterError(f"creating the accounting database user failed: {result.stderr}")

    @property
    def munge_socket(self) -> Path:
        return self.root / "run" / "munge.socket"

    def _write_files(self) -> None:
        root = self.root
        root.chmod(0o755)  # munged wants its socket's folders searchable by all
        for sub in ("etc", "run", "log", "state", "spool", "dev", "bin"):
            (root / sub).mkdir(exist_ok=True)
            (root / sub).chmod(0o755)
        (root / "munge").mkdir(mode=0o700, exist_ok=True)
        for i in range(self.gpus):  # a GPU per character device, as /dev/nvidiaN would be
            dev = root / "dev" / f"gpu{i}"
            if not dev.exists():
                os.mknod(dev, 0o666 | 0o020000, os.makedev(1, 3))
        sock = self.munge_socket
        (root / "etc" / "slurmdbd.conf").write_text(f"""\
AuthType=auth/munge
AuthInfo=socket={sock}
DbdHost={self.node}
DbdAddr=127.0.0.1
DbdPort={self.ports['slurmdbd']}
SlurmUser=root
LogFile={root}/log/slurmdbd.log
PidFile={root}/run/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports['mariadb']}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
""")
        (root / "etc" / "slurmdbd.conf").chmod(0o600)
        gres = f"Gres=gpu:{self.gpus}" if self.gpus else ""
        self.conf.write_text(f"""\
ClusterName=cellscale
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ports['slurmctld']}
SlurmdPort={self.ports['slurmd']}
AuthType=auth/munge
AuthInfo=socket={sock}
SlurmUser=root
SlurmdUser=root
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
MailProg=/bin/true
# no cgroups, no systemd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# the node may declare more CPUs/memory than the machine has (several jobs share 2 cores)
SlurmdParameters=config_overrides
DefMemPerCPU=500
GresTypes=gpu
MpiDefault=none
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports['slurmdbd']}
# the munge socket for the connection to slurmdbd
AccountingStoragePass={sock}
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={self.memory_mb} {gres} State=UNKNOWN
PartitionName=cpu Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={self.node} MaxTime=INFINITE State=UP
""")
        (root / "etc" / "gres.conf").write_text(
            "".join(f"NodeName={self.node} Name=gpu File={root}/dev/gpu{i}\n" for i in range(self.gpus)))
        # snakemake-executor-plugin-slurm-jobstep strips SLURM_* (SLURM_CONF too) before the srun it runs
        # inside each job, so that srun would look for /etc/slurm/slurm.conf, where real clusters keep it
        # (or run configless). This cluster lives in a temp folder: its srun wrapper restores SLURM_CONF.
        srun = root / "bin" / "srun"
        srun.write_text(f'#!/bin/sh\nSLURM_CONF="{self.conf}" exec {_which("srun") or "/usr/bin/srun"} "$@"\n')
        srun.chmod(0o755)
