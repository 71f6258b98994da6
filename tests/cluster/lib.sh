# shellcheck shell=bash
# shellcheck disable=SC2034  # settings used by the scripts that source this file
# Shared settings and helpers of the local test cluster (sourced by up, down, env).
#
# Layout (each root overridable by an environment variable):
#   $WOMM_CLUSTER_CACHE (/var/cache/womm-cluster)  built binaries, base rootfs tarball, Go build dir
#   $WOMM_CLUSTER_STATE (/var/lib/womm-cluster)    pki, kubeconfigs, configs, data, logs/, pids/
#   $WOMM_CLUSTER_RUN   (/run/womm-cluster)        sockets and runtime state of the nodes' containerds
#
# Two nodes: womm-node is this machine's network namespace; womm-node2 runs its own containerd, kubelet,
# kube-proxy and NetworkPolicy enforcer in a network namespace of its own (womm-node2, joined to this one by
# a veth) and in one mount namespace of its own (kept at $RUN/node2/ns/mnt).

CLUSTER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE=${WOMM_CLUSTER_STATE:-/var/lib/womm-cluster}
CACHE=${WOMM_CLUSTER_CACHE:-/var/cache/womm-cluster}
RUN=${WOMM_CLUSTER_RUN:-/run/womm-cluster}

# The one place versions are pinned is go.mod beside this file.
K8S_VERSION=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v1\./ { print $2; exit }' "$CLUSTER_DIR/go.mod")
ETCD_VERSION=$(awk '$1 == "go.etcd.io/etcd/server/v3" && $2 ~ /^v3\./ { print $2; exit }' "$CLUSTER_DIR/go.mod")
# CoreDNS is built on its own (its module graph is not Kubernetes'), so its version is pinned here.
COREDNS_VERSION=v1.12.4
BIN=$CACHE/bin/$K8S_VERSION
# The NetworkPolicy enforcer: womm-netpol (netpol/main.go), kube-router's policy controller at the
# version netpol/go.mod pins; its binary is named by that version and a digest of the module's files.
NETPOL_DIR=$CLUSTER_DIR/netpol
KUBE_ROUTER_VERSION=$(awk '$1 == "github.com/cloudnativelabs/kube-router/v2" && $2 ~ /^v2\./ { print $2; exit }' \
    "$NETPOL_DIR/go.mod")
NETPOL_BINARY=womm-netpol-$KUBE_ROUTER_VERSION-$(cat "$NETPOL_DIR"/{go.mod,go.sum,main.go} | sha256sum | cut -c1-10)
NETPOL_HEALTHZ=127.0.0.1:20244
K8S_BINARIES=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl)

# Network: everything stays on this machine.
NODE_NAME=womm-node
NFT_TABLE=womm-cluster         # nftables table (family ip) of the pod range's isolation
NODE_BRIDGE=wommnode0          # empty bridge carrying the node's /32 address
NODE_IP=10.250.0.1
POD_BRIDGE=cni0
POD_CIDR=10.244.0.0/24
CLUSTER_CIDR=10.244.0.0/16     # every node's pods
SVC_CIDR=10.96.0.0/16
KUBE_SVC_IP=10.96.0.1
API_PORT=6443
API_URL=https://$NODE_IP:$API_PORT
ETCD_URL=http://127.0.0.1:2379

REGISTRY=127.0.0.1:5000
BASE_IMAGE=$REGISTRY/womm-test/debian:bookworm
PAUSE_IMAGE=$REGISTRY/womm-test/pause:1
CHECK_IMAGE_REPO=$REGISTRY/womm-test/cluster-check
DEBIAN_MIRROR=http://deb.debian.org/debian
DEBIAN_SECURITY=http://deb.debian.org/debian-security

DOCKER_SOCK=/var/run/docker.sock
CTR_SOCK=$RUN/containerd/containerd.sock
KUBECONFIG_ADMIN=$STATE/kubeconfig/admin.kubeconfig
CHECK_NS=womm-cluster-check  # up adds a timestamp

# The second node. Its processes run in network namespace $NODE2_NETNS (reached from here through the veth
# $NODE2_VETH: $NODE2_GW here, $NODE2_IP there, a /30) and in one mount namespace shared by its containerd
# and kubelet ($NODE2_MNTNS, a bind mount of the namespace, in a private mount of its own). Its pods'
# cgroups live under /$NODE2_CGROUP in every hierarchy; its state under $STATE/node2 and $RUN/node2.
NODE2_NAME=womm-node2
NODE2_NETNS=womm-node2
NODE2_VETH=wommn2h
NODE2_GW=10.250.1.1
NODE2_IP=10.250.1.2
NODE2_POD_CIDR=10.244.1.0/24
NODE2_CGROUP=womm-node2
NODE2_STATE=$STATE/node2
NODE2_RUN=$RUN/node2
NODE2_MNTNS=$NODE2_RUN/ns/mnt
NODE2_CTR_SOCK=$NODE2_RUN/containerd/containerd.sock
NODES=("$NODE_NAME" "$NODE2_NAME")

# Components in start order; down stops them in the order of STOP_ORDER. Those named node2-* are node 2's and
# run in its namespaces; registry-relay brings the registry (127.0.0.1 only) to node 2.
COMPONENTS=(dockerd registry containerd etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy coredns
            womm-netpol registry-relay node2-containerd node2-kubelet node2-kube-proxy node2-womm-netpol)
STOP_ORDER=(node2-womm-netpol node2-kube-proxy node2-kubelet node2-containerd registry-relay
            womm-netpol coredns kubelet kube-proxy containerd kube-scheduler kube-controller-manager kube-apiserver etcd
            registry dockerd)
# The cluster's DNS (CoreDNS, on the node's address): Services and pods by name, nothing else.
CLUSTER_DOMAIN=cluster.local
DNS_IP=$NODE_IP

# Host sysctls the cluster (kubelet, kube-proxy, dockerd, this script) may change; saved by up, restored by down.
SYSCTLS=(kernel.panic kernel.panic_on_oops vm.overcommit_memory kernel.keys.root_maxkeys
         kernel.keys.root_maxbytes net.ipv4.conf.all.route_localnet net.ipv4.ip_forward
         net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
         net.netfilter.nf_conntrack_max net.netfilter.nf_conntrack_tcp_timeout_established
         net.netfilter.nf_conntrack_tcp_timeout_close_wait)

# Paths outside $STATE that the kubelet or CRI create; down removes those that did not exist before up.
FOREIGN_PATHS=(/var/log/pods /var/log/containers /var/lib/kubelet /run/netns /var/lib/cni /etc/cni /usr/libexec/kubernetes)

# Our processes live in one cgroup per component (so that nothing they spawn is lost).
cg_base() {
    local h
    for h in /sys/fs/cgroup/pids /sys/fs/cgroup/unified /sys/fs/cgroup; do
        if [[ -e $h/cgroup.procs ]]; then echo "$h/womm-cluster"; return; fi
    done
    return 1
}

log() { printf '[%s] %s\n' "${LOG_TAG:-cluster}" "$*"; }
die() { printf '[%s] ERROR: %s\n' "${LOG_TAG:-cluster}" "$*" >&2; exit 1; }

require_root() { [[ $(id -u) == 0 ]] || die "must run as root"; }

pidfile() { echo "$STATE/pids/$1.pid"; }

# The executable path a component runs (used to check a recorded pid is still ours).
component_exe() {
    case $1 in
        dockerd) echo /usr/sbin/dockerd ;;
        registry) echo /usr/bin/docker-registry ;;
        containerd|node2-containerd) echo /usr/bin/containerd ;;
        registry-relay) echo /usr/bin/socat ;;
        etcd) echo "$BIN/etcd" ;;
        coredns) echo "$BIN/coredns-$COREDNS_VERSION" ;;
        womm-netpol|node2-womm-netpol) echo "$BIN/$NETPOL_BINARY" ;;
        node2-*) echo "$BIN/${1#node2-}" ;;
        *) echo "$BIN/$1" ;;
    esac
}

# Run a command in node 2's network namespace (nsenter, not `ip netns exec`: that one remounts /sys for the
# namespace, which hides /sys/fs/cgroup from what it runs).
in_node2() { nsenter --net="/run/netns/$NODE2_NETNS" "$@"; }
# Whether node 2's mount namespace is held at $NODE2_MNTNS.
node2_mntns_held() { [[ $(stat -f -c %T "$NODE2_MNTNS" 2>/dev/null) == nsfs ]]; }

# Print the pid of a running component, or fail.
component_pid() {
    local f pid exe
    f=$(pidfile "$1")
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
    [[ ${exe% (deleted)} == "$(component_exe "$1")" ]] || return 1
    echo "$pid"
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" --request-timeout=10s "$@"; }

# Print the last lines of a component's log (for failure reports).
show_log() {
    local f=$STATE/logs/$1.log
    printf '[%s] --- %s: log %s (last %s lines) ---\n' "${LOG_TAG:-cluster}" "$1" "$f" "${2:-30}" >&2
    if [[ -f $f ]]; then tail -n "${2:-30}" "$f" >&2; else echo "(no log)" >&2; fi
    printf '[%s] --- end of %s log ---\n' "${LOG_TAG:-cluster}" "$1" >&2
}

# Every mount point at or below DIR, deepest first.
mounts_under() {
    local dir=${1%/}
    [[ -n $dir ]] || return 0
    findmnt -rn -o TARGET | awk -v d="$dir" '$0 == d || index($0, d "/") == 1' | sort -r
}
# Unmount everything at or below DIR (a busy mount is detached lazily).
unmount_under() {
    local m
    while read -r m; do
        [[ -n $m ]] || continue
        m=$(printf '%b' "${m//\\x/\\x}")
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done < <(mounts_under "$1")
}

# Whether the process recorded for a component is alive (just started ones may not have exec'd yet).
pid_alive() {
    local f pid
    f=$(pidfile "$1")
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ -d /proc/$pid ]] && ! grep -qs '^State:.*Z' "/proc/$pid/status"
}

# stop_component NAME SECONDS: SIGTERM the recorded process, SIGKILL it after SECONDS; forget its pid.
# (What it spawned stays: containerd's shims must outlive a containerd restart. down empties cgroups.)
stop_component() {
    local name=$1 limit=$2 pid i
    if pid=$(component_pid "$name"); then
        kill -TERM "$pid" 2>/dev/null
        for ((i = 0; i < limit * 10; i++)); do pid_alive "$name" || break; sleep 0.1; done
        if pid_alive "$name"; then
            printf '[%s] warning: %s (pid %s) did not stop within %ss: SIGKILL\n' "${LOG_TAG:-cluster}" "$name" "$pid" "$limit" >&2
            kill -KILL "$pid" 2>/dev/null
            for ((i = 0; i < 50; i++)); do pid_alive "$name" || break; sleep 0.1; done
        fi
    fi
    rm -f "$(pidfile "$name")" "$STATE/pids/$name.args"
    [[ -z ${pid:-} ]] && return 1 || return 0
}
