#!/usr/bin/env bash
# podman-setup.sh - fresh Debian 12 (bookworm, root) -> Docker-compatible Engine API on a unix
# socket, backed by rootful podman 4.3 + runc, with a locally built image (no registry needed).
#
#   podman-setup.sh [up]     install (if needed), configure, import image, start service, venv
#   podman-setup.sh down     remove all containers of this lab, stop the service (by its PID)
#   podman-setup.sh env      print the env vars to use the lab from a shell / pytest
#   podman-setup.sh purge    'down' + delete $LAB (storage, config, venv); packages stay
#
# Env knobs: LAB=/tmp/lab/podman  IMAGE=localhost/aurea-busybox:latest  STORAGE_DRIVER=overlay|vfs
#            SETUP_VENV=0 (1: create $LAB/venv with aiodocker)  APT_UPDATE=1  EXIT_DELAY=5
#
# Everything podman keeps lives under $LAB, except what podman 4.3 hard-codes for root:
# /run/netns (bridge-network namespaces), /run/runc (runc state), /run/containers/networks
# (netavark state), /var/lib/containers/cache (blob-info cache), /etc/cni (empty dir from pkg).
#
# Why each setting (all found by trial on this VM: cgroup v1 "hybrid", no systemd, root without
# CAP_SYS_RESOURCE, nofile hard limit 20000):
#   runtime=runc       crun 1.8.1 refuses: "cgroups in hybrid mode not supported, drop all
#                      controllers from cgroupv2" (hugetlb sits in the v2 hierarchy here).
#   default_ulimits    podman's root defaults (nofile=1048576, nproc=4194304) exceed the hard
#                      limits and cannot be raised without CAP_SYS_RESOURCE ->
#                      "setrlimit RLIMIT_NOFILE/NPROC: Operation not permitted". podman itself
#                      lowers its own RLIMIT_NPROC to 32768, so nproc must be <= 32768.
#                      Caveat: a container that sets any ulimit itself (HostConfig.Ulimits, --ulimit)
#                      loses ALL default_ulimits and gets nofile=1048576 again -> same error
#                      ("rlimit type 7"); such a client must set nofile (<= hard limit) as well.
#   cgroup_manager / events_logger: podman auto-falls back to cgroupfs/file without systemd;
#                      set explicitly so behaviour does not depend on detection.
#   down: kill leftover conmons. Every Docker-API exec leaves a conmon pair behind (parent in
#                      wait(), child sleeping engine.exit_command_delay = 300 s before it runs
#                      `podman container cleanup --exec`); they outlive `podman rm` of their
#                      container and the service. 'down' ends every conmon/podman whose command
#                      line names $LAB, by PID (TERM, then KILL after 3 s).
#   down, iptables: a container on the default bridge network makes netavark add NETAVARK* chains
#                      (filter+nat, iptables-nft) and set net.ipv4.ip_forward=1; the chains stay
#                      after the bridge is gone. 'down' (and so 'purge') removes them when no
#                      podman* link is left; netavark re-creates them on the next bridge container.
#                      (ip_forward is left as is: its earlier value is unknown).
#   down also unmounts $LAB/storage/overlay (the overlay driver's self bind mount outlives the
#                      service), so an 'rm -rf $LAB' after 'down' does not hit a busy mount point.
#   service cwd = $LAB: conmon 2.1.6 writes its cgroup-v1 OOM marker as a relative "oom" file in
#                      its working directory (= the service's), which was the caller's cwd. podman
#                      looks for it in the bundle dir, so State.OOMKilled stays false here anyway:
#                      judge OOM by ExitCode 137 + the memory limit, not by OOMKilled.
# Known gaps of podman 4.3's Docker API (seen here): /containers/{id}/top returns an empty string;
# /containers/{id}/update answers 404; State.OOMKilled stays false (see above).
# Re-checked on a second VM of the same shape (Debian 12, kernel 6.18, cgroup v1 hybrid with only
# hugetlb on the v2 mount, nofile hard 20000, nproc hard 96365, no CAP_SYS_RESOURCE, ext4 root,
# overlay in /proc/filesystems): config unchanged, overlay driver works; changed: service cwd,
# 'down' (leftover conmons, overlay mount, netavark iptables chains).
# Aurea's copy, checked on a third VM of the same shape (kernel 6.18, cgroup v1 hybrid, hugetlb on
# v2, nofile hard 20000, nproc hard 96365, no CAP_SYS_RESOURCE, no /bin/busybox): the recipe works
# as it was (purge + up in ~13 s, 11 s of it apt). Changed here: engine.exit_command_delay = 5
# (EXIT_DELAY), so the conmon pair each Docker-API exec leaves behind goes after 5 s instead of
# 300 s (Aurea inspects an exec's exit code as soon as its stream ends, so it never needs them
# longer); SETUP_VENV defaults to 0 (Aurea's tests use the project's venv, where the docker extra
# brings aiodocker). .ci/run runs `up` and evals `env` before the tests.
set -euo pipefail

LAB=${LAB:-/tmp/lab/podman}
SOCK="$LAB/podman.sock"
IMAGE=${IMAGE:-localhost/aurea-busybox:latest}
STORAGE_DRIVER=${STORAGE_DRIVER:-overlay}
SETUP_VENV=${SETUP_VENV:-0}
EXIT_DELAY=${EXIT_DELAY:-5}
APT_UPDATE=${APT_UPDATE:-1}
export CONTAINERS_CONF="$LAB/conf/containers.conf"
export CONTAINERS_STORAGE_CONF="$LAB/conf/storage.conf"

T0=$(date +%s%N)
lap() { local ms=$(( ($(date +%s%N) - T0) / 1000000 )); printf '[%4d.%03ds] %s\n' $((ms/1000)) $((ms%1000)) "$*"; }

ping_sock() { [ -S "$SOCK" ] && podman --remote --url "unix://$SOCK" version >/dev/null 2>&1; }

service_pid() {
  local pid
  pid=$(cat "$LAB/service.pid" 2>/dev/null) || return 1
  [ -n "$pid" ] && grep -q 'system' "/proc/$pid/cmdline" 2>/dev/null && echo "$pid"
}

do_env() {
  cat <<EOF
export CONTAINERS_CONF=$CONTAINERS_CONF
export CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF
export DOCKER_HOST=unix://$SOCK
export AUREA_TEST_IMAGE=$IMAGE
EOF
}

# PIDs of conmon/podman processes whose command line names $LAB (this lab's service, exec-session
# conmons waiting out exit_command_delay, `podman container cleanup` they spawn). Matched by exe +
# path, so other labs / other podman users on the host are not touched.
lab_pids() {
  local d exe
  for d in /proc/[0-9]*; do
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    case "${exe##*/}" in conmon|podman) ;; *) continue ;; esac
    tr '\0' ' ' < "$d/cmdline" 2>/dev/null | grep -qF -- "$LAB/" && echo "${d#/proc/}"
  done
  return 0
}

do_down() {
  if command -v podman >/dev/null && [ -f "$CONTAINERS_CONF" ]; then
    podman rm -af -t 0 >/dev/null 2>&1 || true
  fi
  local pid pids
  if pid=$(service_pid); then
    kill "$pid" && lap "stopped podman service pid $pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -f "$LAB/service.pid"
  pids=$(lab_pids)
  if [ -n "$pids" ]; then
    kill $pids 2>/dev/null || true
    for _ in $(seq 30); do pids=$(lab_pids); [ -z "$pids" ] && break; sleep 0.1; done
    [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
    lap "ended leftover conmon/podman processes of $LAB${pids:+ (SIGKILL: $(echo $pids))}"
  fi
  umount_lab
  clean_netavark_fw
}

# overlay driver bind-mounts $LAB/storage/overlay onto itself and leaves it mounted after the service
# exits; unmount anything under $LAB (podman mounts it again on next use).
umount_lab() {
  local m
  { grep -o " $LAB/[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do
    umount "$m" 2>/dev/null || umount -l "$m"; lap "unmounted $m"
  done
}

# netavark's iptables chains (NETAVARK_FORWARD, NETAVARK-HOSTPORT-*) and the jumps into them.
clean_netavark_fw() {
  command -v iptables >/dev/null || return 0
  if ip -br link 2>/dev/null | grep -q '^podman'; then echo "podman bridge still up; iptables left as is"; return 0; fi
  local t rule c chains
  for t in filter nat; do
    chains=$(iptables -t "$t" -S 2>/dev/null | awk '/^-N NETAVARK/{print $2}')
    [ -n "$chains" ] || continue
    iptables -t "$t" -S | grep -E '^-A (PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) .*-j NETAVARK' \
      | sed 's/^-A /-D /' | while read -r rule; do eval "iptables -t $t $rule" || true; done
    for c in $chains; do iptables -t "$t" -F "$c" || true; done
    for c in $chains; do iptables -t "$t" -X "$c" || true; done
    lap "removed iptables $t chains: $(echo $chains)"
  done
}

do_up() {
  [ "$(id -u)" = 0 ] || { echo "must run as root (rootful podman is needed for cgroup v1 limits)"; exit 1; }
  mkdir -p "$LAB"/{conf,storage,run,tmp,networks,image}

  # 1. config (all paths under $LAB) ---------------------------------------------------------
  hn=$(ulimit -Hn); [ "$hn" = unlimited ] && hn=1048576; [ "$hn" -gt 1048576 ] && hn=1048576
  hu=$(ulimit -Hu); [ "$hu" = unlimited ] && hu=32768;   [ "$hu" -gt 32768 ] && hu=32768
  cat > "$CONTAINERS_STORAGE_CONF" <<EOF
[storage]
driver = "$STORAGE_DRIVER"
graphroot = "$LAB/storage"
runroot = "$LAB/run"
EOF
  cat > "$CONTAINERS_CONF" <<EOF
[containers]
default_ulimits = ["nofile=$hn:$hn", "nproc=$hu:$hu"]
[network]
network_config_dir = "$LAB/networks"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$LAB/run/events.log"
tmp_dir = "$LAB/tmp"
exit_command_delay = $EXIT_DELAY
EOF
  lap "config written: $CONTAINERS_CONF (nofile=$hn nproc=$hu), driver=$STORAGE_DRIVER"

  # 2. packages ------------------------------------------------------------------------------
  need=()
  for b in podman runc conmon catatonit netavark; do
    command -v "$b" >/dev/null || [ -x "/usr/lib/podman/$b" ] || [ -x "/usr/libexec/podman/$b" ] || need+=("$b")
  done
  if [ ${#need[@]} -gt 0 ]; then
    [ "$APT_UPDATE" = 1 ] && apt-get update -qq
    # runc satisfies "Depends: crun | runc", so crun is not pulled in; 14 packages, ~19 s here.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      podman runc catatonit netavark aardvark-dns iptables >/dev/null
    lap "apt: installed $(podman --version), runc, catatonit, netavark"
  else
    lap "apt: podman/runc already installed"
  fi

  # 3. local image from Debian's busybox-static (extracted, not installed) ---------------------
  if ! podman image exists "$IMAGE"; then
    local work="$LAB/image"
    rm -rf "$work/rootfs" "$work"/busybox-static_*.deb "$work/pkg"
    if [ -x /bin/busybox ] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked'; then
      bb=/bin/busybox
    else
      (cd "$work" && apt-get download -qq -o APT::Sandbox::User=root busybox-static >/dev/null)
      dpkg-deb -x "$work"/busybox-static_*.deb "$work/pkg"
      bb="$work/pkg/bin/busybox"
    fi
    mkdir -p "$work/rootfs"/{bin,etc,tmp,proc,sys,dev,root}
    chmod 1777 "$work/rootfs/tmp"
    cp "$bb" "$work/rootfs/bin/busybox"
    for a in $("$work/rootfs/bin/busybox" --list); do
      [ "$a" = busybox ] || ln -sf busybox "$work/rootfs/bin/$a"
    done
    echo 'root:x:0:0:root:/root:/bin/sh' > "$work/rootfs/etc/passwd"
    echo 'root:x:0:' > "$work/rootfs/etc/group"
    tar -C "$work/rootfs" -c . | podman import -q \
      --change 'CMD ["/bin/sh"]' \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      - "$IMAGE" >/dev/null
    lap "image imported: $IMAGE ($(podman image inspect -f '{{.Size}}' "$IMAGE") bytes)"
  else
    lap "image present: $IMAGE"
  fi

  # 4. Docker-compatible API service ---------------------------------------------------------
  if ping_sock; then
    lap "service already serving on $SOCK (pid $(service_pid || echo '?'))"
  else
    rm -f "$SOCK"
    # cwd = $LAB: conmon 2.1.6 writes its cgroup-v1 OOM marker as a relative "oom" file, i.e. into
    # the service's working directory (it would land in the caller's cwd, e.g. a repo root).
    ( cd "$LAB" && exec nohup setsid podman system service --time=0 "unix://$SOCK" >"$LAB/service.log" 2>&1 ) &
    echo $! > "$LAB/service.pid"
    for _ in $(seq 100); do ping_sock && break; sleep 0.1; done
    ping_sock || { echo "service did not come up; see $LAB/service.log"; cat "$LAB/service.log"; exit 1; }
    lap "service serving on unix://$SOCK (pid $(cat "$LAB/service.pid"), log $LAB/service.log)"
  fi

  # 5. smoke test through the API: one container with limits --------------------------------
  out=$(podman --remote --url "unix://$SOCK" run --rm --network=none --cpus 0.5 --memory 64m \
        "$IMAGE" sh -c 'echo ok; cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max')
  lap "smoke run via socket: $(echo $out)"

  # 6. venv with aiodocker -------------------------------------------------------------------
  if [ "$SETUP_VENV" = 1 ] && [ ! -x "$LAB/venv/bin/python" ] ; then
    python3 -m venv "$LAB/venv"
    "$LAB/venv/bin/pip" install -q aiodocker 2>&1 | grep -v '^WARNING: Location' || true
    lap "venv: $LAB/venv ($("$LAB/venv/bin/python" -c 'import aiodocker; print("aiodocker", aiodocker.__version__)'))"
  fi
  echo "--- use with:"; do_env
}

case "${1:-up}" in
  up) do_up ;;
  down) do_down ;;
  env) do_env ;;
  purge)
    do_down   # ends with umount_lab + clean_netavark_fw
    rm -rf "$LAB"; echo "removed $LAB" ;;
  *) echo "usage: $0 [up|down|env|purge]"; exit 2 ;;
esac
