package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"

	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/appliance/tools"

	// Both runtimes register themselves; runtime.Select picks one.
	_ "github.com/trousseau-io/trousseau/appliance/local"
	_ "github.com/trousseau-io/trousseau/kind"
)

// The Cmd* functions are what the mage targets call, one each. They select
// the runtime (TROUSSEAU_RUNTIME, else kind with Docker, else local) and
// print for people; the operations they wrap are exported for tests.

// CmdTools builds every missing tool into the cache, one progress line per
// tool with its elapsed time; cached tools are reported instantly.
func CmdTools(ctx context.Context) error {
	p := progress.Default()
	root, err := tools.RepoRoot()
	if err != nil {
		return err
	}
	for _, t := range tools.All {
		if path, err := t.Path(); err == nil {
			p.Say("  ✓ %s %s (cached: %s)", t.Name, t.Version, path)
			continue
		}
		var log bytes.Buffer
		var w io.Writer = &log
		if p.Verbose() {
			w = os.Stdout
		}
		err := p.Step(fmt.Sprintf("build %s %s from its Go module (minutes on a cold cache)", t.Name, t.Version), func() error {
			return t.Build(root, w)
		})
		if err != nil {
			if log.Len() > 0 {
				fmt.Fprintf(os.Stderr, "last output of the build:\n%s\n", progress.Tail(log.String(), 20))
			}
			return err
		}
	}
	return nil
}

// CmdDemo runs the narrated demo.
func CmdDemo(ctx context.Context) error {
	rt, p, err := selectRuntime()
	if err != nil {
		return err
	}
	return Run(ctx, rt, p)
}

// CmdRotate rotates the Transit key, waits for the apiserver to use it and
// migrates every Secret, then audits.
func CmdRotate(ctx context.Context) error {
	rt, p, err := selectRuntime()
	if err != nil {
		return err
	}
	rot, err := Rotate(ctx, rt, p)
	if err != nil {
		return err
	}
	p.Say("    %d Secrets rewritten onto key_id %s", rot.Migrated, rot.NewKeyID)
	_, err = Audit(ctx, rt, p)
	return err
}

// CmdAudit audits etcd and fails when anything is plaintext or stale.
func CmdAudit(ctx context.Context) error {
	rt, p, err := selectRuntime()
	if err != nil {
		return err
	}
	_, err = Audit(ctx, rt, p)
	return err
}

// CmdStatus prints what runs where and whether the plugin is healthy.
func CmdStatus(ctx context.Context) error {
	rt, p, err := selectRuntime()
	if err != nil {
		return err
	}
	st, err := rt.Status(ctx)
	if err != nil {
		return err
	}
	up := 0
	for _, c := range st.Components {
		mark, id := "✗", "-"
		if c.Running {
			mark, id = "✓", c.ID
			up++
		}
		p.Say("  %s %-15s %-8s %-50s %s", mark, c.Name, id, c.Address, c.Detail)
	}
	if up == 0 {
		p.Say("nothing runs: start the stack with `go tool mage demo`")
		return nil
	}
	p.Say("KUBECONFIG=%s kubectl get secrets -A", st.Kubeconfig)
	return nil
}

// CmdDown stops the stack and cleans up, even after a crash.
func CmdDown(ctx context.Context) error {
	rt, p, err := selectRuntime()
	if err != nil {
		return err
	}
	return p.Step("stop the "+rt.Name()+" stack and remove its state", func() error { return rt.Down(ctx) })
}

// CmdE2E builds missing tools, then runs the end-to-end tests (build tag
// e2e) against the selected runtime. The tests stop everything they start.
func CmdE2E(ctx context.Context) error {
	if err := CmdTools(ctx); err != nil {
		return err
	}
	root, err := tools.RepoRoot()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "test", "-tags", "e2e", "-count=1", "-v", "-timeout", "40m", "./appliance/e2e/")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("e2e tests failed (%v): the output above names the failing test and its figures; "+
			"on the local runtime the component logs stay in .trousseau/instances/e2e/logs", err)
	}
	return nil
}

func selectRuntime() (runtime.Runtime, *progress.Printer, error) {
	p := progress.Default()
	root, err := tools.RepoRoot()
	if err != nil {
		return nil, nil, err
	}
	rt, err := runtime.Select(runtime.Options{RepoRoot: root, Progress: p})
	return rt, p, err
}
