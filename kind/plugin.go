package kind

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/trousseau-io/trousseau/charts"
)

// opsPort is the plugin's ops port; the apiserver's pod proxy needs the
// number, not the port name.
const opsPort = 8787

// pluginValues are the chart values the appliance sets; everything else is
// the chart's production default (Kubernetes auth, DaemonSet, socket path).
//
// The plugin runs as the host user (uid, gid): the socket directory is that
// user's 0700 directory bind-mounted into the node, so the plugin can create
// its socket there without any capability, the socket (0600) belongs to the
// user who runs mage and PluginStatus can dial it from the host, and
// kube-apiserver, root with its capabilities, dials it too.
func pluginValues(imageID string, uid, gid int) map[string]any {
	return map[string]any{
		"podSecurityContext": map[string]any{
			"runAsUser": uid, "runAsGroup": gid, "runAsNonRoot": uid != 0,
			"seccompProfile": map[string]any{"type": "RuntimeDefault"},
		},
		"ops":   map[string]any{"address": fmt.Sprintf("0.0.0.0:%d", opsPort)},
		"image": map[string]any{"repository": PluginImage, "tag": PluginImageTag, "pullPolicy": "Never"},
		"vault": map[string]any{"address": vaultInClusterAddr, "transitMount": transitMount, "keyName": transitKey},
		"auth":  map[string]any{"method": "kubernetes", "kubernetes": map[string]any{"role": vaultK8sRole, "mount": vaultK8sMount}},
		// A short refresh so a rotation reaches the apiserver within seconds.
		"status": map[string]any{"refreshInterval": "5s"},
		// A rebuilt image under the same tag must roll the pods.
		"deployment": map[string]any{"podAnnotations": map[string]any{"trousseau.io/image-id": imageID}},
	}
}

// installPlugin installs charts/trousseau and waits until the DaemonSet's
// pods are ready on every control-plane node, i.e. each /readyz is 200.
func (k *Kind) installPlugin(ctx context.Context, cs kubernetes.Interface) error {
	id, err := imageID(ctx)
	if err != nil {
		return err
	}
	if err := k.helmApply(ctx, charts.Trousseau, charts.ReleaseName, charts.ReleaseNamespace, pluginValues(id, os.Getuid(), os.Getgid())); err != nil {
		return err
	}
	err = waitFor(ctx, 3*time.Minute, "the plugin DaemonSet to be ready on every control-plane node", func() (bool, error) {
		ds, err := cs.AppsV1().DaemonSets(charts.ReleaseNamespace).Get(ctx, charts.ReleaseName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return daemonSetReady(ds), nil
	})
	if err != nil {
		return err
	}
	// The chart's own readiness check, as an operator would run it.
	return k.helmTest(charts.ReleaseName, charts.ReleaseNamespace)
}

func daemonSetReady(ds *appsv1.DaemonSet) bool {
	s := ds.Status
	return s.DesiredNumberScheduled > 0 && s.NumberReady == s.DesiredNumberScheduled &&
		s.UpdatedNumberScheduled == s.DesiredNumberScheduled && s.ObservedGeneration >= ds.Generation
}

// PluginOps implements runtime.Runtime: a loopback HTTP proxy, started once
// per process, to the ops port of the plugin pod on the first control-plane
// node, through the apiserver's pod proxy. It resolves the pod per request,
// because a restarted plugin is a new pod.
func (k *Kind) PluginOps() string {
	k.opsOnce.Do(func() {
		url, err := k.startOpsProxy()
		if err != nil {
			k.p.Say("  ✗ plugin ops proxy: %v", err)
			url = "http://127.0.0.1:1" // nothing listens: callers get a connection error
		}
		k.opsURL = url
	})
	return k.opsURL
}

func (k *Kind) startOpsProxy() (string, error) {
	rc, err := k.restConfig()
	if err != nil {
		return "", err
	}
	tr, err := rest.TransportFor(rc)
	if err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return "", err
	}
	n, err := k.firstControlPlane()
	if err != nil {
		return "", err
	}
	proxy := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(r *httputil.ProxyRequest) {
			pod, err := pluginPodOn(r.In.Context(), cs, n.String())
			if err != nil {
				pod = "no-plugin-pod"
			}
			target := strings.TrimSuffix(rc.Host, "/") + fmt.Sprintf("/api/v1/namespaces/%s/pods/%s:%d/proxy", charts.ReleaseNamespace, pod, opsPort)
			u, _ := r.In.URL.Parse(target + r.In.URL.Path)
			u.RawQuery = r.In.URL.RawQuery
			r.Out.URL = u
			r.Out.Host = u.Host
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go http.Serve(ln, proxy) //nolint:errcheck // lives as long as the process
	return "http://" + ln.Addr().String(), nil
}

func pluginPodOn(ctx context.Context, cs kubernetes.Interface, node string) (string, error) {
	pods, err := cs.CoreV1().Pods(charts.ReleaseNamespace).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/name=trousseau,app.kubernetes.io/instance=" + charts.ReleaseName,
		FieldSelector: "spec.nodeName=" + node,
	})
	if err != nil {
		return "", err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			return p.Name, nil
		}
	}
	return "", fmt.Errorf("no plugin pod on node %s", node)
}
