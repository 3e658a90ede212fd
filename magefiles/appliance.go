//go:build mage

package main

import (
	"context"
	"fmt"

	"github.com/trousseau-io/trousseau/appliance/bundle"
	"github.com/trousseau-io/trousseau/appliance/demo"
)

// Tools builds kube-apiserver, etcd and vault from their pinned Go modules
// into ~/.cache/trousseau/tools (once per version; a second run is instant).
func Tools(ctx context.Context) error { return demo.CmdTools(ctx) }

// Demo brings up the whole encrypted-Secrets stack and proves encryption from
// etcd. Runtime: TROUSSEAU_RUNTIME=kind|local, else kind when Docker answers.
func Demo(ctx context.Context) error { return demo.CmdDemo(ctx) }

// E2e runs the end-to-end tests on the selected runtime; nothing is left running.
func E2e(ctx context.Context) error { return demo.CmdE2E(ctx) }

// Down stops everything the appliance started, even after a crash.
func Down(ctx context.Context) error { return demo.CmdDown(ctx) }

// Status shows what runs, where, and whether the plugin is healthy.
func Status(ctx context.Context) error { return demo.CmdStatus(ctx) }

// Rotate rotates the Transit key, waits for the apiserver to use the new
// key_id, migrates every Secret and audits.
func Rotate(ctx context.Context) error { return demo.CmdRotate(ctx) }

// Migrate moves every Secret onto the current key_id without rotating (the
// fix when an audit finds stale objects after a rotation done in Vault).
func Migrate(ctx context.Context) error { return demo.CmdMigrate(ctx) }

// Audit reads etcd and reports plaintext, current and stale objects; it fails
// when anything is plaintext or stale.
func Audit(ctx context.Context) error { return demo.CmdAudit(ctx) }

// Bundle writes the GitOps bundle to dist/: packaged charts, Flux and Argo CD
// examples, the kubeadm EncryptionConfiguration and static-pod manifest, and
// SHA256SUMS. Two runs give identical checksums.
func Bundle() error {
	files, err := bundle.Write("dist")
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Println("  dist/" + f)
	}
	return nil
}
