package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// stopGrace is how long a component may take to exit on SIGTERM before it
// is killed.
const stopGrace = 10 * time.Second

// Down implements runtime.Runtime. It stops components in reverse start
// order by PID, then removes everything a next run could mistake for live
// state: with the in-memory Vault gone, etcd's data is undecryptable. The
// CA and admin certificate (pki/), the built plugin (bin/) and the logs are
// kept for the next run and for post-mortems.
func (l *Local) Down(ctx context.Context) error {
	var errs []error
	for i := len(components) - 1; i >= 0; i-- {
		c := components[i]
		if err := stop(ctx, l.pidFile(c), l.binOf(c), syscall.SIGTERM, stopGrace); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", c, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%w\nFix: stop the listed pids by hand (kill <pid>), then run `go tool mage down` again", errors.Join(errs...))
	}
	for _, p := range []string{"etcd", "vault", "plugin", "encryption", "run", "pids", "apiserver", "state.json", "kubeconfig"} {
		if err := os.RemoveAll(l.path(p)); err != nil {
			errs = append(errs, err)
		}
	}
	if sock := l.socketPath(); filepath.Dir(sock) != l.path("run") {
		_ = os.RemoveAll(filepath.Dir(sock))
	}
	return errors.Join(errs...)
}

// QuoteLogs implements runtime.LogQuoter: the last lines of every
// component's log, for failure reports.
func (l *Local) QuoteLogs(lines int) string {
	var b strings.Builder
	for _, c := range components {
		fmt.Fprintf(&b, "--- last %d lines of %s:\n%s\n", lines, l.logFile(c), tail(l.logFile(c), lines))
	}
	return b.String()
}
