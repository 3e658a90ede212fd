package kind

import (
	"context"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/kind/pkg/cluster/constants"
	"sigs.k8s.io/kind/pkg/cluster/nodes"

	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/charts"
)

// Status implements runtime.Runtime: the nodes, then the pods that make the
// stack (apiservers, the dev Vault, the plugins), and the plugin's Status.
// A node or pod that runs but is not ready, and a plugin whose healthz is
// not "ok", are marked unhealthy, so status never shows them as good.
func (k *Kind) Status(ctx context.Context) (runtime.Status, error) {
	st := runtime.Status{Runtime: k.Name(), Kubeconfig: k.Kubeconfig(), Logs: k.logsWhere()}
	exists, err := k.clusterExists()
	if err != nil {
		return st, err
	}
	if !exists {
		st.Components = append(st.Components, runtime.Component{Name: "kind cluster " + k.opts.Name, Detail: "not created: " + k.upHint()})
		return st, nil
	}
	all, err := k.provider.ListNodes(k.opts.Name)
	if err != nil {
		return st, err
	}
	cs, err := runtime.Clientset(k)
	if err != nil {
		return st, err
	}
	registered := map[string]*corev1.Node{}
	nodeList, nodesErr := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if nodesErr == nil {
		for i := range nodeList.Items {
			registered[nodeList.Items[i].Name] = &nodeList.Items[i]
		}
	}
	st.Components = append(st.Components, nodeRows(all, registered, nodesErr)...)
	for _, q := range []struct{ ns, selector, name string }{
		{"kube-system", "component=kube-apiserver", "kube-apiserver"},
		{VaultNamespace, "app.kubernetes.io/instance=" + VaultRelease, "vault (" + k.vaultMode + ")"},
		{charts.ReleaseNamespace, "app.kubernetes.io/name=trousseau", "trousseau"},
	} {
		pods, err := cs.CoreV1().Pods(q.ns).List(ctx, metav1.ListOptions{LabelSelector: q.selector})
		if err != nil {
			st.Components = append(st.Components, runtime.Component{Name: q.name, Detail: err.Error()})
			continue
		}
		// A component without a pod is down, not absent from the table.
		if len(pods.Items) == 0 {
			st.Components = append(st.Components, runtime.Component{
				Name: q.name, Detail: fmt.Sprintf("no pod in namespace %s matches %s: %s", q.ns, q.selector, k.upHint()),
			})
		}
		for _, p := range pods.Items {
			st.Components = append(st.Components, podComponent(q.name, p))
		}
	}
	ps, err := k.PluginStatus(ctx)
	st.Components = append(st.Components, pluginStatusComponent("unix://"+k.hostSocket(0), ps, err))
	return st, nil
}

// nodeRows maps kind's containers to status rows. An HA cluster's external
// load balancer is a container of the cluster but never a Kubernetes node,
// so it gets its own row instead of reading as an unregistered node.
func nodeRows(all []nodes.Node, registered map[string]*corev1.Node, listErr error) []runtime.Component {
	var rows []runtime.Component
	for _, n := range all {
		role, err := n.Role()
		switch {
		case err != nil:
			rows = append(rows, runtime.Component{Name: "node", ID: n.String(), Running: true, Detail: "role unknown: " + err.Error()})
		case role == constants.ExternalLoadBalancerNodeRoleValue:
			rows = append(rows, runtime.Component{Name: "load balancer", ID: n.String(), Running: true, Detail: "kind's apiserver load balancer"})
		default:
			rows = append(rows, nodeComponent(n.String(), registered[n.String()], listErr))
		}
	}
	return rows
}

// nodeComponent maps a kind node (a running container) to a status row,
// healthy when Kubernetes reports it Ready. When the node list failed the
// health is unknown and left unmarked, with the reason.
func nodeComponent(id string, n *corev1.Node, listErr error) runtime.Component {
	c := runtime.Component{Name: "node", ID: id, Running: true}
	switch {
	case listErr != nil:
		c.Detail = "readiness unknown: " + listErr.Error()
	case n == nil:
		c.Unhealthy, c.Detail = true, "not registered with the apiserver"
	default:
		c.Unhealthy, c.Detail = true, "NotReady"
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				c.Unhealthy, c.Detail = false, "Ready"
			} else if cond.Type == corev1.NodeReady && cond.Message != "" {
				c.Detail = "NotReady: " + cond.Message
			}
		}
	}
	return c
}

// podComponent maps a pod to a status row: running is the pod's phase,
// healthy its Ready condition (for the plugin, its /readyz). A not-ready
// pod names the container state that keeps it so, e.g. CrashLoopBackOff.
func podComponent(name string, p corev1.Pod) runtime.Component {
	c := runtime.Component{Name: name, ID: p.Name, Address: p.Spec.NodeName, Running: p.Status.Phase == corev1.PodRunning}
	ready := false
	for _, cond := range p.Status.Conditions {
		if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
			ready = true
		}
	}
	if ready && c.Running {
		c.Detail = "ready"
		return c
	}
	c.Unhealthy = c.Running
	why := []string{string(p.Status.Phase)}
	for _, s := range p.Status.ContainerStatuses {
		switch {
		case s.State.Waiting != nil && s.State.Waiting.Reason != "":
			why = append(why, s.Name+": "+s.State.Waiting.Reason)
		case s.State.Running != nil && !s.Ready:
			why = append(why, s.Name+": running, not ready")
		}
	}
	c.Detail = "not ready (" + strings.Join(why, "; ") + ")"
	return c
}

// pluginStatusComponent maps the plugin's KMS Status RPC to a status row:
// an answer other than healthz "ok" is what kube-apiserver also sees, so
// the row is unhealthy even though the plugin answered.
func pluginStatusComponent(address string, ps runtime.PluginStatus, err error) runtime.Component {
	c := runtime.Component{Name: "plugin Status RPC", Address: address}
	if err != nil {
		c.Detail = strings.TrimSpace(err.Error())
		return c
	}
	c.Running = true
	c.Unhealthy = ps.Healthz != "ok"
	c.Detail = fmt.Sprintf("healthz %q, key_id %s", ps.Healthz, ps.KeyID)
	if c.Unhealthy {
		c.Detail = "unhealthy: " + c.Detail
	}
	return c
}

// logsWhere tells a person where the logs are: kind keeps them in the
// nodes, so it names the commands that fetch them.
func (k *Kind) logsWhere() string {
	return fmt.Sprintf("`KUBECONFIG=%s kubectl -n %s logs -l app.kubernetes.io/name=trousseau --prefix` (every plugin pod); "+
		"`kind export logs --name %s` (every node and pod)", k.Kubeconfig(), charts.ReleaseNamespace, k.opts.Name)
}
