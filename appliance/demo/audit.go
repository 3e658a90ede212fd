package demo

import (
	"context"
	"fmt"
	"strings"

	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// Audit is `mage audit`: read every encrypted resource straight from etcd,
// print per resource how many objects are plaintext, on the current key_id
// or on an older one, and fail when anything is plaintext or stale.
func Audit(ctx context.Context, rt runtime.Runtime, p *progress.Printer) ([]etcdproof.Report, error) {
	var reports []etcdproof.Report
	err := p.Step("audit etcd: how is every Secret stored?", func() error {
		var err error
		reports, err = etcdproof.Audit(ctx, rt)
		return err
	})
	if err != nil {
		return nil, err
	}
	var bad []string
	for _, r := range reports {
		p.Say("    %s", r)
		for _, k := range first(r.Plaintext, 5) {
			p.Say("      plaintext: %s", k)
		}
		for _, k := range first(r.Undecodable, 5) {
			p.Say("      undecodable: %s", k)
		}
		if !r.OK() {
			bad = append(bad, r.Resource)
		}
	}
	if len(bad) > 0 {
		return reports, fmt.Errorf("audit failed for %s: objects are stored in plaintext or under an older key_id. "+
			"Fix: run `go tool mage rotate` (it migrates every Secret onto the current key), or, if the stack runs "+
			"identity-only, switch it to KMS first", strings.Join(bad, ", "))
	}
	return reports, nil
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
