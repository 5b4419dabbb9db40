#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine: controller (slurmctld), node daemon (slurmd)
# and accounting (slurmdbd + MariaDB bound to 127.0.0.1), authenticated by munge. No GPUs.
#
# Idempotent: installs Debian's packages only when missing, rewrites the configs, (re)starts only
# the daemons that are not running or whose config changed, then waits until `sinfo` shows the node
# idle and `sacct` answers. Run as root, without systemd (CI machines, containers):
#
#     bash scripts/slurm-cluster.sh            # set up / check
#     bash scripts/slurm-cluster.sh --stop     # stop the daemons this script started
#
# Used by .ci/run before the `slurm`-marked tests; see docs/runners.md ("SLURM").
set -euo pipefail

CLUSTER=llem
PARTITION=debug
CONF_DIR=/etc/slurm
STATE=/var/lib/slurm
LOGS=/var/log/slurm
RUN=/run/slurm
t0=$(date +%s)
step_t=$t0
step() {
  local now; now=$(date +%s)
  echo "[slurm-cluster] +$((now - step_t)) s (total $((now - t0)) s): $*"
  step_t=$now
}
die() { echo "[slurm-cluster] error: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it installs packages and starts system daemons)"

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_pidfile() {
  local f=$1
  if pid_alive "$f"; then
    local pid; pid=$(cat "$f")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

if [ "${1:-}" = "--stop" ]; then
  stop_pidfile $RUN/slurmd.pid
  stop_pidfile $RUN/slurmctld.pid
  stop_pidfile $RUN/slurmdbd.pid
  stop_pidfile /run/mysqld/mysqld.pid
  stop_pidfile /run/munge/munged.pid
  step "stopped"
  exit 0
fi

# 1. Packages (Debian 12: Slurm 22.05). apt waits for a lock another provisioner may hold.
need=()
for pkg in slurm-wlm slurmdbd munge mariadb-server; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  # No init system here: keep package scripts from starting services (we start them below).
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d
  apt-get -o DPkg::Lock::Timeout=900 update -qq >/dev/null || true
  apt-get -o DPkg::Lock::Timeout=900 install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
    || die "apt-get install ${need[*]} failed"
  rm -f /usr/sbin/policy-rc.d
  step "installed ${need[*]}"
else
  step "packages present"
fi

# 2. munge: one key, munged running as the munge user.
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
  dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
chmod 711 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  su -s /bin/sh munge -c "/usr/sbin/munged --pid-file=/run/munge/munged.pid" \
    || die "munged did not start (see /var/log/munge/munged.log)"
  for _ in $(seq 1 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null || die "munge does not round-trip a credential"
step "munged up"

# 3. MariaDB on 127.0.0.1 only, and the accounting database.
mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
if [ ! -d /var/lib/mysql/mysql ]; then
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null \
    || die "mariadb-install-db failed"
fi
if ! mariadb -e 'SELECT 1' >/dev/null 2>&1; then
  (setsid mariadbd --user=mysql --bind-address=127.0.0.1 --pid-file=/run/mysqld/mysqld.pid \
    --log-error=/var/log/mysql-llem.err </dev/null >/dev/null 2>&1 &)
  for _ in $(seq 1 150); do mariadb -e 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
fi
mariadb -e 'SELECT 1' >/dev/null 2>&1 || die "mariadbd did not answer (see /var/log/mysql-llem.err)"
DBD_CONF=$CONF_DIR/slurmdbd.conf
DB_PASS=""
[ -f "$DBD_CONF" ] && DB_PASS=$(sed -n 's/^StoragePass=//p' "$DBD_CONF")
[ -n "$DB_PASS" ] || DB_PASS=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9')
mariadb <<SQL || die "creating the accounting database failed"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
step "mariadb up, slurm_acct_db ready"

# 4. Configs (rewritten every time; daemons restart only when their config changed).
mkdir -p $CONF_DIR $STATE/slurmctld $STATE/slurmd $LOGS $RUN
HOST=$(hostname -s)
node_line=$(slurmd -C | head -1)   # NodeName=... CPUs=... Boards=... RealMemory=...
mem_mb=$(echo "$node_line" | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
mem_mb=$(( mem_mb > 4096 ? mem_mb - 2048 : mem_mb ))
node_line=$(echo "$node_line" | sed "s/RealMemory=[0-9]*/RealMemory=$mem_mb/; s/ UpTime=.*//")

write_if_changed() {  # path mode; content on stdin. Prints "changed" when the file changed.
  local tmp; tmp=$(mktemp)
  cat > "$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then rm -f "$tmp"; return 0; fi
  install -m "$2" "$tmp" "$1"; rm -f "$tmp"; echo changed
}

dbd_changed=$(write_if_changed "$DBD_CONF" 600 <<EOF
# written by scripts/slurm-cluster.sh
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$RUN/slurmdbd.pid
LogFile=$LOGS/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
)
conf_changed=$(write_if_changed $CONF_DIR/slurm.conf 644 <<EOF
# written by scripts/slurm-cluster.sh: one node, no GPUs, accounting through slurmdbd
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default, a job without --mem would hold the whole node's memory
DefMemPerCPU=1024
ReturnToService=2
MinJobAge=300
KillWait=5
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
$node_line State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)
step "configs written (slurm.conf ${conf_changed:-unchanged}, slurmdbd.conf ${dbd_changed:-unchanged})"

# 5. slurmdbd, the cluster in accounting, then slurmctld and slurmd.
if [ -n "$dbd_changed" ]; then stop_pidfile $RUN/slurmdbd.pid; fi
if ! pid_alive $RUN/slurmdbd.pid; then
  slurmdbd || die "slurmdbd did not start (see $LOGS/slurmdbd.log)"
fi
for _ in $(seq 1 100); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.2; done
sacctmgr -n list cluster >/dev/null 2>&1 || die "slurmdbd does not answer (see $LOGS/slurmdbd.log)"
if ! sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER"; then
  sacctmgr -i add cluster "$CLUSTER" >/dev/null || die "sacctmgr add cluster $CLUSTER failed"
fi
step "slurmdbd up, cluster $CLUSTER registered"

if [ -n "$conf_changed" ]; then
  stop_pidfile $RUN/slurmd.pid
  stop_pidfile $RUN/slurmctld.pid
fi
if ! pid_alive $RUN/slurmctld.pid; then
  slurmctld || die "slurmctld did not start (see $LOGS/slurmctld.log)"
fi
if ! pid_alive $RUN/slurmd.pid; then
  slurmd || die "slurmd did not start (see $LOGS/slurmd.log)"
fi

# 6. Wait for the node to be idle (or busy with jobs) and accounting to answer.
state=""
for _ in $(seq 1 150); do
  state=$(sinfo -h -n "$HOST" -o %T 2>/dev/null | head -1 || true)
  case "$state" in idle|mixed|allocated|completing) break ;; esac
  case "$state" in down*|drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;; esac
  sleep 0.2
done
case "$state" in idle|mixed|allocated|completing) ;; *)
  die "node $HOST is '$state', not idle (see $LOGS/slurmctld.log and $LOGS/slurmd.log)" ;;
esac
sacct -n -X -S now-1minutes >/dev/null 2>&1 || die "sacct does not answer (accounting)"
step "cluster $CLUSTER ready: node $HOST $state, partition $PARTITION, sacct answers"
