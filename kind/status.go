package kind

import (
	"context"
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/charts"
)

// Status implements runtime.Runtime: the nodes, then the pods that make the
// stack (apiservers, the dev Vault, the plugins), and the plugin's Status.
func (k *Kind) Status(ctx context.Context) (runtime.Status, error) {
	st := runtime.Status{Runtime: k.Name(), Kubeconfig: k.Kubeconfig()}
	exists, err := k.clusterExists()
	if err != nil {
		return st, err
	}
	if !exists {
		st.Components = append(st.Components, runtime.Component{Name: "kind cluster " + k.opts.Name, Detail: "not created: `go tool mage demo`"})
		return st, nil
	}
	all, err := k.provider.ListNodes(k.opts.Name)
	if err != nil {
		return st, err
	}
	for _, n := range all {
		st.Components = append(st.Components, runtime.Component{Name: "node", ID: n.String(), Running: true})
	}
	cs, err := runtime.Clientset(k)
	if err != nil {
		return st, err
	}
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
		for _, p := range pods.Items {
			ready := false
			for _, c := range p.Status.Conditions {
				if c.Type == "Ready" && c.Status == "True" {
					ready = true
				}
			}
			detail := "ready"
			if !ready {
				detail = "not ready (" + string(p.Status.Phase) + ")"
			}
			st.Components = append(st.Components, runtime.Component{
				Name: q.name, Running: p.Status.Phase == "Running", ID: p.Name, Address: p.Spec.NodeName, Detail: detail,
			})
		}
	}
	if ps, err := k.PluginStatus(ctx); err == nil {
		st.Components = append(st.Components, runtime.Component{
			Name: "plugin Status RPC", Running: true, Address: "unix://" + k.hostSocket(0),
			Detail: fmt.Sprintf("healthz %q, key_id %s", ps.Healthz, ps.KeyID),
		})
	} else {
		st.Components = append(st.Components, runtime.Component{Name: "plugin Status RPC", Detail: strings.TrimSpace(err.Error())})
	}
	return st, nil
}
