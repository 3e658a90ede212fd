package kind

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kind/pkg/cluster/constants"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/exec"
)

// fakeNode is a kind node whose commands are answered by run, so code that
// drives nodes is testable without Docker. It records every command line.
type fakeNode struct {
	name, role string
	run        func(args []string, stdin io.Reader, stdout io.Writer) error

	mu   sync.Mutex
	cmds []string
}

func (n *fakeNode) String() string              { return n.name }
func (n *fakeNode) Role() (string, error)       { return n.role, nil }
func (n *fakeNode) IP() (string, string, error) { return "", "", nil }
func (n *fakeNode) SerialLogs(io.Writer) error  { return nil }
func (n *fakeNode) Command(c string, a ...string) exec.Cmd {
	return &fakeCmd{n: n, args: append([]string{c}, a...)}
}
func (n *fakeNode) CommandContext(_ context.Context, c string, a ...string) exec.Cmd {
	return n.Command(c, a...)
}

func (n *fakeNode) commands() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.cmds...)
}

type fakeCmd struct {
	n      *fakeNode
	args   []string
	stdin  io.Reader
	stdout io.Writer
}

func (c *fakeCmd) Run() error {
	c.n.mu.Lock()
	c.n.cmds = append(c.n.cmds, strings.Join(c.args, " "))
	c.n.mu.Unlock()
	out := c.stdout
	if out == nil {
		out = io.Discard
	}
	if err := c.n.run(c.args, c.stdin, out); err != nil {
		return &exec.RunError{Command: c.args, Inner: err}
	}
	return nil
}
func (c *fakeCmd) SetEnv(...string) exec.Cmd      { return c }
func (c *fakeCmd) SetStdin(r io.Reader) exec.Cmd  { c.stdin = r; return c }
func (c *fakeCmd) SetStdout(w io.Writer) exec.Cmd { c.stdout = w; return c }
func (c *fakeCmd) SetStderr(io.Writer) exec.Cmd   { return c }

// containerdNode answers what kind's LoadImageArchive runs in a node: the
// containerd config (for the snapshotter) and ctr's import, whose stdin it
// keeps.
func containerdNode(name, role string, imported *bytes.Buffer) *fakeNode {
	return &fakeNode{name: name, role: role, run: func(args []string, stdin io.Reader, stdout io.Writer) error {
		switch {
		case args[0] == "containerd":
			_, err := io.WriteString(stdout, "version = 3\n[plugins.\"io.containerd.cri.v1.images\"]\nsnapshotter = \"overlayfs\"\n")
			return err
		case args[0] == "ctr":
			_, err := io.Copy(imported, stdin)
			return err
		}
		return fmt.Errorf("unexpected command %v", args)
	}}
}

// TestImageLoadsIntoEveryKubernetesNodeButNotTheLoadBalancer: an HA cluster
// has kind's external load balancer next to the nodes. It has no
// containerd, so loading the image into it would fail the whole Up; every
// control-plane node must get the archive.
func TestImageLoadsIntoEveryKubernetesNodeButNotTheLoadBalancer(t *testing.T) {
	archive := filepath.Join(t.TempDir(), "trousseau.tar")
	if err := os.WriteFile(archive, []byte("image-archive"), 0o600); err != nil {
		t.Fatal(err)
	}
	var got1, got2 bytes.Buffer
	cp1 := containerdNode("trousseau-control-plane", constants.ControlPlaneNodeRoleValue, &got1)
	cp2 := containerdNode("trousseau-control-plane2", constants.ControlPlaneNodeRoleValue, &got2)
	lb := &fakeNode{name: "trousseau-external-load-balancer", role: constants.ExternalLoadBalancerNodeRoleValue,
		run: func(args []string, _ io.Reader, _ io.Writer) error {
			return fmt.Errorf("%v: the load balancer has no containerd", args)
		}}
	if err := loadArchive([]nodes.Node{cp1, lb, cp2}, archive); err != nil {
		t.Fatal(err)
	}
	if got1.String() != "image-archive" || got2.String() != "image-archive" {
		t.Errorf("control planes imported %q and %q, want the archive in both", got1.String(), got2.String())
	}
	if cmds := lb.commands(); len(cmds) != 0 {
		t.Errorf("commands ran in the load balancer: %v", cmds)
	}
	if cmds := cp1.commands(); len(cmds) != 2 || !strings.HasPrefix(cmds[1], "ctr --namespace=k8s.io images import") {
		t.Errorf("control plane ran %v, want the containerd config read and ctr's import", cmds)
	}
}

// TestStatusShowsTheHALoadBalancerAsItsOwnRow: the load balancer container
// is never a registered Kubernetes node, so it must not read as a node that
// failed to register (which would make status fail on every HA cluster).
func TestStatusShowsTheHALoadBalancerAsItsOwnRow(t *testing.T) {
	none := func([]string, io.Reader, io.Writer) error { return nil }
	cp := &fakeNode{name: "trousseau-control-plane", role: constants.ControlPlaneNodeRoleValue, run: none}
	lb := &fakeNode{name: "trousseau-external-load-balancer", role: constants.ExternalLoadBalancerNodeRoleValue, run: none}
	ready := &corev1.Node{Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	rows := nodeRows([]nodes.Node{cp, lb}, map[string]*corev1.Node{cp.name: ready}, nil)
	if len(rows) != 2 {
		t.Fatalf("rows %+v, want one per container", rows)
	}
	if !rows[0].OK() || rows[0].Name != "node" {
		t.Errorf("ready control plane: %+v", rows[0])
	}
	if !rows[1].OK() || rows[1].Name != "load balancer" || rows[1].ID != lb.name {
		t.Errorf("load balancer row %+v, want its own healthy row", rows[1])
	}
}

// TestPluginSocketIsDialableFromADeepCheckout: the host path of a node's
// socket grows with the checkout's path, and past 107 bytes connect(2)
// refuses it; PluginStatus must still reach the plugin.
func TestPluginSocketIsDialableFromADeepCheckout(t *testing.T) {
	deep := filepath.Join(t.TempDir(), strings.Repeat("checkout-", 6), ".trousseau", "instances", "e2e", "kind", "nodes", "control-plane-0", "socket")
	if err := os.MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(deep, "kms.sock")
	if len(sock) <= maxUnixPath {
		t.Fatalf("test path %s is too short to exercise the limit", sock)
	}
	// Bind through a relative path, as the plugin inside the node binds its short one.
	t.Chdir(deep)
	ln, err := net.Listen("unix", "kms.sock")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
		}
	}()
	if c, err := net.Dial("unix", sock); err == nil {
		c.Close()
		t.Fatalf("dialing the %d-byte path worked: the limit this test guards is gone", len(sock))
	}
	path, cleanup, err := dialablePath(sock)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial %s (for %s): %v", path, sock, err)
	}
	c.Close()
	cleanup()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("the short link %s outlives the call: %v", path, err)
	}
	if short, _, _ := dialablePath("/var/run/trousseau/kms.sock"); short != "/var/run/trousseau/kms.sock" {
		t.Errorf("a short path is rewritten to %s", short)
	}
}
