// Command womm-netpol enforces Kubernetes NetworkPolicies on the node of womm's local test cluster.
//
// tests/cluster/up builds it from this module (kube-router comes from the Go module proxy at the
// version go.mod pins) and runs it as a host process beside kube-proxy. The enforcement itself is
// kube-router's NetworkPolicy controller (pkg/controllers/netpol): it programs iptables (filter
// table: KUBE-ROUTER-INPUT, -FORWARD, -OUTPUT, KUBE-POD-FW-*, KUBE-NWPLCY-*) and ipsets
// (KUBE-SRC-*, KUBE-DST-*) in this network namespace. This program gives the controller what it
// needs and no more: informers on pods, namespaces and NetworkPolicies through a kubeconfig, its
// node, and a health endpoint on loopback. It writes nothing to the API and serves nothing else.
// On SIGTERM it stops and leaves the rules in place (pods stay confined while it restarts);
// tests/cluster/down removes them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloudnativelabs/kube-router/v2/pkg/controllers/netpol"
	"github.com/cloudnativelabs/kube-router/v2/pkg/healthcheck"
	"github.com/cloudnativelabs/kube-router/v2/pkg/options"
	v1core "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"
)

const forwardChain = "KUBE-ROUTER-FORWARD" // the controller's chain, jumped to from FORWARD

type settings struct {
	kubeconfig, node, serviceCIDR, healthz string
	syncPeriod, nodeWait                   time.Duration
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "womm-netpol: error: %v\n", err)
		os.Exit(1)
	}
}

func parse() (settings, error) {
	var s settings
	klog.InitFlags(nil)
	flag.StringVar(&s.kubeconfig, "kubeconfig", "", "kubeconfig of this program's own identity (required)")
	flag.StringVar(&s.node, "node", "", "name of the Node whose pods are enforced here (required)")
	flag.StringVar(&s.serviceCIDR, "service-cidr", "", "the cluster's Service range, e.g. 10.96.0.0/16 (required)")
	flag.StringVar(&s.healthz, "healthz", "127.0.0.1:20244", "loopback address of GET /healthz")
	flag.DurationVar(&s.syncPeriod, "sync-period", time.Minute, "full resync of the rules at least this often")
	flag.DurationVar(&s.nodeWait, "node-wait", time.Minute, "how long to wait for the Node to be registered")
	flag.Parse()
	if flag.NArg() > 0 {
		return s, fmt.Errorf("unexpected argument %q", flag.Arg(0))
	}
	for _, required := range []struct{ name, value string }{
		{"kubeconfig", s.kubeconfig}, {"node", s.node}, {"service-cidr", s.serviceCIDR},
	} {
		if required.value == "" {
			return s, fmt.Errorf("--%s is required", required.name)
		}
	}
	if _, _, err := net.ParseCIDR(s.serviceCIDR); err != nil {
		return s, fmt.Errorf("--service-cidr: %v", err)
	}
	if host, _, err := net.SplitHostPort(s.healthz); err != nil || !net.ParseIP(host).IsLoopback() {
		return s, fmt.Errorf("--healthz must be a loopback address and port, not %q", s.healthz)
	}
	if s.syncPeriod < time.Second {
		return s, fmt.Errorf("--sync-period must be at least 1s")
	}
	return s, nil
}

func run() error {
	s, err := parse()
	if err != nil {
		return err
	}
	restConfig, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %v", s.kubeconfig, err)
	}
	restConfig.UserAgent = "womm-netpol"
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return err
	}
	if err := waitForNode(client, s.node, s.nodeWait); err != nil {
		return err
	}
	// kube-router looks its node up by NODE_NAME first (then by this machine's hostname): this one.
	if err := os.Setenv("NODE_NAME", s.node); err != nil {
		return err
	}

	// The controller's configuration: IPv4 only, this node, the Service range; no metrics.
	config := options.NewKubeRouterConfig()
	config.EnableIPv4, config.EnableIPv6 = true, false
	config.RunFirewall, config.RunRouter, config.RunServiceProxy = true, false, false
	config.HostnameOverride = s.node
	config.ClusterIPCIDRs = []string{s.serviceCIDR}
	config.IPTablesSyncPeriod = s.syncPeriod
	config.MetricsEnabled = false

	stop := make(chan struct{})
	factory := informers.NewSharedInformerFactory(client, 0)
	pods := factory.Core().V1().Pods().Informer()
	namespaces := factory.Core().V1().Namespaces().Informer()
	policies := factory.Networking().V1().NetworkPolicies().Informer()
	factory.Start(stop)
	if !cache.WaitForCacheSync(stop, pods.HasSynced, namespaces.HasSynced, policies.HasSynced) {
		return errors.New("could not list pods, namespaces and NetworkPolicies")
	}

	iptables, ipsets, err := netpol.NewIPTablesHandlers(config)
	if err != nil {
		return err
	}
	var ipsetLock sync.Mutex
	controller, err := netpol.NewNetworkPolicyController(client, config, pods, policies, namespaces,
		&ipsetLock, iptables, ipsets)
	if err != nil {
		return err
	}
	for informer, handler := range map[cache.SharedIndexInformer]cache.ResourceEventHandler{
		pods: controller.PodEventHandler, namespaces: controller.NamespaceEventHandler,
		policies: controller.NetworkPolicyEventHandler,
	} {
		if _, err := informer.AddEventHandler(handler); err != nil {
			return err
		}
	}

	// The controller says when each full sync starts; the health endpoint reads the last time.
	var lastSync, syncs atomic.Int64
	heartbeats := make(chan *healthcheck.ControllerHeartbeat, 8)
	go func() {
		for beat := range heartbeats {
			lastSync.Store(beat.LastHeartBeat.UnixNano())
			if syncs.Add(1) == 1 {
				klog.Info("womm-netpol: first sync of the rules started")
			}
		}
	}()
	health := &http.Server{
		Addr:              s.healthz,
		ReadHeaderTimeout: 5 * time.Second,
		Handler:           healthHandler(&lastSync, &syncs, s.syncPeriod, iptables[v1core.IPv4Protocol]),
	}
	listener, err := net.Listen("tcp", s.healthz)
	if err != nil {
		return fmt.Errorf("health endpoint: %v", err)
	}
	go func() {
		if err := health.Serve(listener); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.Errorf("health endpoint: %v", err)
		}
	}()

	var running sync.WaitGroup
	running.Add(1)
	go controller.Run(heartbeats, stop, &running)
	klog.Infof("womm-netpol: enforcing NetworkPolicies for the pods of node %s (Services %s), health on http://%s/healthz",
		s.node, s.serviceCIDR, s.healthz)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	got := <-signals
	klog.Infof("womm-netpol: %v: stopping (the rules stay in place)", got)
	close(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = health.Shutdown(ctx)
	done := make(chan struct{})
	go func() { running.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done(): // a sync in progress is cut short; the next start does a full one
	}
	return nil
}

// waitForNode waits until the Node is registered: the controller needs its InternalIP to know
// which pods are local.
func waitForNode(client kubernetes.Interface, name string, patience time.Duration) error {
	deadline := time.Now().Add(patience)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		cancel()
		if err == nil {
			return nil
		}
		if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
			return fmt.Errorf("reading node %s: %v", name, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node %s: %v (waited %s)", name, err, patience)
		}
		klog.Infof("womm-netpol: waiting for node %s: %v", name, err)
		time.Sleep(time.Second)
	}
}

// healthHandler answers 200 while the controller syncs (a full sync started within two sync
// periods) and FORWARD still sends traffic through its chain, with the count of syncs and the time of
// the last; 503 and the reason otherwise.
func healthHandler(lastSync, syncs *atomic.Int64, period time.Duration, ipt interface {
	List(table, chain string) ([]string, error)
}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		last := lastSync.Load()
		problem := ""
		switch {
		case last == 0:
			problem = "no sync yet"
		case time.Since(time.Unix(0, last)) > 2*period+30*time.Second:
			problem = fmt.Sprintf("no sync since %s", time.Unix(0, last).Format(time.RFC3339))
		default:
			rules, err := ipt.List("filter", "FORWARD")
			if err != nil {
				problem = fmt.Sprintf("iptables: %v", err)
			} else if !jumpsTo(rules, forwardChain) {
				problem = "FORWARD has no jump to " + forwardChain
			}
		}
		if problem != "" {
			http.Error(w, problem, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintf(w, "ok: %d syncs, the last started %s\n", syncs.Load(),
			time.Unix(0, last).UTC().Format(time.RFC3339Nano))
	})
}

func jumpsTo(rules []string, chain string) bool {
	for _, rule := range rules {
		if strings.HasSuffix(rule, " -j "+chain) {
			return true
		}
	}
	return false
}
