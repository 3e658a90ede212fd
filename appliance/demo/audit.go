package demo

import (
	"context"
	"fmt"
	"strings"

	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// listedKeys bounds how many etcd keys the audit names per problem: enough
// to act on, short enough to read.
const listedKeys = 20

// Audit is `mage audit`: read every encrypted resource straight from etcd,
// print per resource how many objects are plaintext, on the current key_id
// or on an older one, name the offending keys, and fail (the step marked ✗)
// when anything is plaintext, undecodable or stale.
func Audit(ctx context.Context, rt runtime.Runtime, p *progress.Printer) ([]etcdproof.Report, error) {
	var reports []etcdproof.Report
	var verdict error
	err := p.Step("audit etcd: how is every Secret stored?", func() error {
		var err error
		if reports, err = etcdproof.Audit(ctx, rt); err != nil {
			return err
		}
		verdict = auditVerdict(reports)
		return verdict
	})
	if err != nil && verdict == nil {
		return nil, err
	}
	for _, r := range reports {
		p.Say("    %s", r)
		for _, l := range []struct {
			what string
			keys []string
		}{{"plaintext", r.Plaintext}, {"undecodable", r.Undecodable}, {"older key_id", r.OlderKeys}} {
			for _, line := range bounded(l.keys, listedKeys) {
				p.Say("      %s: %s", l.what, line)
			}
		}
	}
	return reports, verdict
}

// auditVerdict is nil when every object is on the current key_id, else an
// error that counts exactly what is wrong and names the fix for that.
func auditVerdict(reports []etcdproof.Report) error {
	var found, fixes []string
	var plaintext, undecodable, stale int
	current := ""
	for _, r := range reports {
		if r.OK() {
			continue
		}
		current = r.CurrentKeyID
		var parts []string
		if n := len(r.Plaintext); n > 0 {
			parts = append(parts, fmt.Sprintf("%d plaintext", n))
			plaintext += n
		}
		if n := len(r.Undecodable); n > 0 {
			parts = append(parts, fmt.Sprintf("%d undecodable", n))
			undecodable += n
		}
		if n := r.Stale(); n > 0 {
			parts = append(parts, fmt.Sprintf("%d on older key_ids", n))
			stale += n
		}
		found = append(found, r.Resource+": "+strings.Join(parts, ", "))
	}
	if len(found) == 0 {
		return nil
	}
	if plaintext+stale > 0 {
		fix := "run `go tool mage migrate`: it rewrites every Secret, so the apiserver stores it under the current key_id " +
			current + " (no new rotation needed)"
		if plaintext > 0 {
			fix += "; plaintext objects stay plaintext while the apiserver writes with the identity provider, so switch it to KMS first"
		}
		fixes = append(fixes, fix)
	}
	if undecodable > 0 {
		fixes = append(fixes, "undecodable objects carry an encryption prefix trousseau cannot decode (another provider, or corrupt): "+
			"inspect them with `etcdctl get <key>`; a migration cannot rewrite what the apiserver cannot read")
	}
	return fmt.Errorf("audit failed: %s. Fix: %s", strings.Join(found, "; "), strings.Join(fixes, ". "))
}

// bounded returns at most n items and, when there are more, a last line
// saying how many were left out.
func bounded(items []string, n int) []string {
	if len(items) <= n {
		return items
	}
	return append(append([]string{}, items[:n]...), fmt.Sprintf("… %d more", len(items)-n))
}
