package kind

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// TestHAControlPlanesAcceptOrdinaryPods: kind leaves kubeadm's NoSchedule
// taint on every control plane of a multi-node cluster, and the appliance's
// cluster has no workers, so Up removes that taint (and only that one):
// otherwise the dev Vault and the helm test pod never schedule in HA.
func TestHAControlPlanesAcceptOrdinaryPods(t *testing.T) {
	cpTaint := corev1.Taint{Key: controlPlaneTaint, Effect: corev1.TaintEffectNoSchedule}
	other := corev1.Taint{Key: "example.com/keep", Value: "yes", Effect: corev1.TaintEffectNoSchedule}
	node := func(name string, taints ...corev1.Taint) *corev1.Node {
		return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Taints: taints}}
	}
	cs := fake.NewClientset(
		node("trousseau-control-plane", cpTaint),
		node("trousseau-control-plane2", cpTaint, other),
		node("trousseau-control-plane3"),
	)
	ctx := context.Background()
	for range 2 { // Up repairs: a second run changes nothing
		if err := untaintControlPlanes(ctx, cs); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string][]corev1.Taint{
		"trousseau-control-plane":  nil,
		"trousseau-control-plane2": {other},
		"trousseau-control-plane3": nil,
	}
	for name, w := range want {
		n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(n.Spec.Taints) != len(w) || (len(w) == 1 && n.Spec.Taints[0] != w[0]) {
			t.Errorf("node %s taints %v, want %v", name, n.Spec.Taints, w)
		}
	}
}
