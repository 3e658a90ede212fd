//go:build mage

// Trousseau's build targets. Targets are thin wiring: the logic lives in
// importable packages so that tests run the same code as the targets.
// Run `go tool mage -l` for the list.
package main

import (
	"context"
	"os"

	"github.com/magefile/mage/sh"
)

// Build compiles the trousseau plugin into bin/trousseau.
func Build() error {
	return sh.RunV("go", "build", "-trimpath", "-ldflags", versionLDFlags(), "-o", "bin/trousseau", "./plugin/cmd/trousseau")
}

// Test runs every unit and integration test: real Vault, the real apiserver
// KMS client, the Helm SDK chart renders and the kind config checks. It builds
// the cached tools first if they are missing.
func Test(ctx context.Context) error {
	if err := Tools(ctx); err != nil {
		return err
	}
	return sh.RunV("go", "test", "-count=1", "-timeout", "30m", "./...")
}

// Lint checks formatting and runs go vet.
func Lint() error {
	out, err := sh.Output("gofmt", "-l", ".")
	if err != nil {
		return err
	}
	if out != "" {
		return lintError("these files need gofmt -w:\n" + out)
	}
	return sh.RunV("go", "vet", "./...")
}

type lintError string

func (e lintError) Error() string { return string(e) }

// versionLDFlags stamps `trousseau version` with the git description.
func versionLDFlags() string {
	v, err := sh.Output("git", "describe", "--tags", "--always", "--dirty")
	if err != nil || v == "" {
		v = "dev"
	}
	if os.Getenv("TROUSSEAU_VERSION") != "" {
		v = os.Getenv("TROUSSEAU_VERSION")
	}
	return "-s -w -X main.version=" + v
}

// Bench runs the benchmark report: the plugin's p50 overhead over a direct
// Transit call (through the socket with the apiserver's own client, against
// real Vault; target ≤ 5 %), Status p99 from the cache (target < 1 ms), and
// the provider's own Transit latency.
func Bench(ctx context.Context) error {
	if err := Tools(ctx); err != nil {
		return err
	}
	return sh.RunV("go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", "2000x",
		"./plugin/server", "./plugin/conformance", "./plugin/transit")
}
