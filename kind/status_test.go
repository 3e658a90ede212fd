package kind

import (
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trousseau-io/trousseau/appliance/runtime"
)

func pod(phase corev1.PodPhase, ready bool, containers ...corev1.ContainerStatus) corev1.Pod {
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	return corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "trousseau-x7k2p"},
		Spec:       corev1.PodSpec{NodeName: "trousseau-control-plane"},
		Status: corev1.PodStatus{
			Phase:             phase,
			Conditions:        []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}},
			ContainerStatuses: containers,
		},
	}
}

func waiting(reason string) corev1.ContainerStatus {
	return corev1.ContainerStatus{Name: "trousseau", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
}

// TestStatusMarksARunningButNotReadyPodUnhealthy: only a running, ready pod
// is OK (✓); one that runs but fails readiness (the plugin's /readyz) is
// running and unhealthy, and the row names the container state that keeps
// it so; a pod that does not run is down, not unhealthy.
func TestStatusMarksARunningButNotReadyPodUnhealthy(t *testing.T) {
	for _, tc := range []struct {
		name               string
		pod                corev1.Pod
		running, unhealthy bool
		detail             []string
	}{
		{"running and ready", pod(corev1.PodRunning, true), true, false, []string{"ready"}},
		{"running, readiness fails", pod(corev1.PodRunning, false,
			corev1.ContainerStatus{Name: "trousseau", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}),
			true, true, []string{"not ready (Running", "trousseau: running, not ready"}},
		{"crash looping", pod(corev1.PodRunning, false, waiting("CrashLoopBackOff")),
			true, true, []string{"not ready (Running", "trousseau: CrashLoopBackOff"}},
		{"image missing", pod(corev1.PodPending, false, waiting("ErrImageNeverPull")),
			false, false, []string{"not ready (Pending", "trousseau: ErrImageNeverPull"}},
		// A stale Ready condition on a pod that no longer runs is not ✓.
		{"failed with a stale Ready", pod(corev1.PodFailed, true), false, false, []string{"not ready (Failed)"}},
	} {
		c := podComponent("trousseau", tc.pod)
		if c.Running != tc.running || c.Unhealthy != tc.unhealthy {
			t.Errorf("%s: running=%v unhealthy=%v, want %v %v (%q)", tc.name, c.Running, c.Unhealthy, tc.running, tc.unhealthy, c.Detail)
		}
		if want := tc.running && !tc.unhealthy; c.OK() != want {
			t.Errorf("%s: OK() = %v, want %v", tc.name, c.OK(), want)
		}
		for _, d := range tc.detail {
			if !strings.Contains(c.Detail, d) {
				t.Errorf("%s: detail %q does not say %q", tc.name, c.Detail, d)
			}
		}
		if c.ID != "trousseau-x7k2p" || c.Address != "trousseau-control-plane" {
			t.Errorf("%s: row names pod %q on %q, want the pod and its node", tc.name, c.ID, c.Address)
		}
	}
}

// TestStatusMarksAPluginWhoseHealthzIsNotOKUnhealthy: the Status RPC row is
// OK only on healthz "ok", what kube-apiserver itself requires; an answer
// with another healthz runs but is unhealthy, and no answer is down.
func TestStatusMarksAPluginWhoseHealthzIsNotOKUnhealthy(t *testing.T) {
	for _, tc := range []struct {
		name               string
		ps                 runtime.PluginStatus
		err                error
		running, unhealthy bool
		detail             string
	}{
		{"healthy", runtime.PluginStatus{Healthz: "ok", KeyID: "transit-3f9a1c2b7d4e-v1"}, nil, true, false,
			`healthz "ok", key_id transit-3f9a1c2b7d4e-v1`},
		{"vault denies", runtime.PluginStatus{Healthz: "vault: permission denied", KeyID: "transit-3f9a1c2b7d4e-v1"}, nil, true, true,
			`unhealthy: healthz "vault: permission denied"`},
		{"no answer", runtime.PluginStatus{}, errors.New("dial unix /x/kms.sock: connect: no such file or directory\n"), false, false,
			"dial unix /x/kms.sock: connect: no such file or directory"},
	} {
		c := pluginStatusComponent("unix:///x/kms.sock", tc.ps, tc.err)
		if c.Running != tc.running || c.Unhealthy != tc.unhealthy {
			t.Errorf("%s: running=%v unhealthy=%v, want %v %v (%q)", tc.name, c.Running, c.Unhealthy, tc.running, tc.unhealthy, c.Detail)
		}
		if want := tc.running && !tc.unhealthy; c.OK() != want {
			t.Errorf("%s: OK() = %v, want %v", tc.name, c.OK(), want)
		}
		if !strings.HasPrefix(c.Detail, tc.detail) || strings.HasSuffix(c.Detail, "\n") {
			t.Errorf("%s: detail %q, want it to start %q (trimmed)", tc.name, c.Detail, tc.detail)
		}
		if c.Address != "unix:///x/kms.sock" {
			t.Errorf("%s: address %q", tc.name, c.Address)
		}
	}
}

// TestStatusLogsNameThisInstancesClusterAndPlugin: kind keeps the logs in
// the nodes, so status names the commands for this instance's cluster.
func TestStatusLogsNameThisInstancesClusterAndPlugin(t *testing.T) {
	for _, instance := range []string{"", "e2e"} {
		opts, err := instanceConfig(runtime.Options{RepoRoot: t.TempDir(), Instance: instance})
		if err != nil {
			t.Fatal(err)
		}
		k := &Kind{opts: opts, instance: instance}
		logs := k.logsWhere()
		for _, want := range []string{
			"`kind export logs --name " + opts.Name + "`",
			"`KUBECONFIG=" + k.Kubeconfig() + " kubectl -n kube-system logs -l app.kubernetes.io/name=trousseau --prefix`",
		} {
			if !strings.Contains(logs, want) {
				t.Errorf("instance %q: logs %q do not say %q", instance, logs, want)
			}
		}
	}
}

// TestStatusMarksANotReadyNodeUnhealthy: a node container runs as long as
// Docker keeps it, so its health is the Kubernetes Ready condition; when
// the node list fails the health is unknown, not bad.
func TestStatusMarksANotReadyNodeUnhealthy(t *testing.T) {
	node := func(status corev1.ConditionStatus, msg string) *corev1.Node {
		return &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
			{Type: corev1.NodeReady, Status: status, Message: msg},
		}}}
	}
	for _, tc := range []struct {
		name      string
		node      *corev1.Node
		listErr   error
		unhealthy bool
		detail    string
	}{
		{"ready", node(corev1.ConditionTrue, "kubelet is posting ready status"), nil, false, "Ready"},
		{"not ready", node(corev1.ConditionFalse, "container runtime network not ready"), nil, true, "NotReady: container runtime network not ready"},
		{"kubelet silent", node(corev1.ConditionUnknown, ""), nil, true, "NotReady"},
		{"never registered", nil, nil, true, "not registered with the apiserver"},
		{"list failed", nil, errors.New("connection refused"), false, "readiness unknown: connection refused"},
	} {
		c := nodeComponent("trousseau-control-plane", tc.node, tc.listErr)
		if !c.Running || c.Unhealthy != tc.unhealthy || c.Detail != tc.detail || c.ID != "trousseau-control-plane" {
			t.Errorf("%s: %+v, want running, unhealthy=%v, detail %q", tc.name, c, tc.unhealthy, tc.detail)
		}
	}
}
