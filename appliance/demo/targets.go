package demo

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

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

// CmdDemo runs the narrated demo. The clock starts here, before the
// runtime is even chosen, so "Done in" is the wait the person had.
func CmdDemo(ctx context.Context) error {
	started := time.Now()
	rt, p, err := selectRuntime()
	if err != nil {
		return err
	}
	if err := Run(ctx, rt, p, started); err != nil {
		return withLogs(ctx, rt, err)
	}
	return nil
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
		return withLogs(ctx, rt, err)
	}
	p.Say("    %d Secrets rewritten onto key_id %s", rot.Migrated, rot.NewKeyID)
	_, err = Audit(ctx, rt, p)
	return err
}

// CmdMigrate moves every Secret onto the current key_id without rotating,
// then audits.
func CmdMigrate(ctx context.Context) error {
	rt, p, err := selectRuntime()
	if err != nil {
		return err
	}
	n, err := Migrate(ctx, rt, p)
	if err != nil {
		return withLogs(ctx, rt, err)
	}
	p.Say("    %d Secrets rewritten", n)
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

// CmdStatus prints what runs where and whether it is healthy, and fails
// when anything is down or unhealthy, so scripts can rely on its exit code.
func CmdStatus(ctx context.Context) error {
	rt, p, err := selectRuntime()
	if err != nil {
		return err
	}
	st, err := rt.Status(ctx)
	if err != nil {
		return err
	}
	return printStatus(p, st)
}

// printStatus marks a component ✓ only when it runs and is healthy, and
// returns an error naming every component that is not, with the fix that
// keeps the Secrets: a re-run of the demo restarts only what is missing.
func printStatus(p *progress.Printer, st runtime.Status) error {
	var down, unhealthy []string
	for _, c := range st.Components {
		mark, id := "✓", c.ID
		if !c.OK() {
			mark = "✗"
		}
		if !c.Running {
			id = "-"
			down = append(down, c.Name)
		} else if c.Unhealthy {
			unhealthy = append(unhealthy, c.Name)
		}
		p.Say("  %s %-15s %-8s %-50s %s", mark, c.Name, id, c.Address, c.Detail)
	}
	if st.Logs != "" {
		p.Say("logs: %s", st.Logs)
	}
	if len(down) == len(st.Components) {
		return fmt.Errorf("the %s stack is not running: start it with `go tool mage demo`", st.Runtime)
	}
	p.Say("KUBECONFIG=%s kubectl get secrets -A", st.Kubeconfig)
	var problems, fixes []string
	if len(down) > 0 {
		problems = append(problems, "not running: "+strings.Join(down, ", "))
		fix := "`go tool mage demo` restarts only what is missing and keeps the Secrets"
		if vaultGone(down) {
			fix = "the dev Vault is gone, and with its in-memory key every stored Secret: `go tool mage demo` " +
				"starts a fresh stack and says what it discards"
		}
		fixes = append(fixes, fix)
	}
	if len(unhealthy) > 0 {
		problems = append(problems, "unhealthy: "+strings.Join(unhealthy, ", "))
		fixes = append(fixes, "the detail above and the logs say why")
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("the %s stack is degraded (%s). Fix: %s; `go tool mage down` only to discard everything, Secrets included",
		st.Runtime, strings.Join(problems, "; "), strings.Join(fixes, "; "))
}

// vaultGone reports whether the dev Vault is among the stopped components:
// both runtimes name its row "vault…". Then no restart keeps the Secrets.
func vaultGone(down []string) bool {
	for _, n := range down {
		if strings.HasPrefix(n, "vault") {
			return true
		}
	}
	return false
}

// withLogs adds where the logs are to a failure, so the person knows where
// to look next.
func withLogs(ctx context.Context, rt runtime.Runtime, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	st, serr := rt.Status(ctx)
	if serr != nil || st.Logs == "" {
		return err
	}
	// On a stack that never started there is nothing new in the logs.
	for _, c := range st.Components {
		if c.Running {
			return fmt.Errorf("%w\nlogs: %s", err, st.Logs)
		}
	}
	return err
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
