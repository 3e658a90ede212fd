// Command trousseau is the Kubernetes KMS v2 plugin: `trousseau serve` runs
// the gRPC socket for kube-apiserver and the ops endpoint, `trousseau
// check-config` validates a configuration, `trousseau version` prints the
// build version.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

// version is stamped at build time:
// go build -ldflags "-X main.version=v1.2.3" ./plugin/cmd/trousseau
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the process exit code: 0 on success or a requested shutdown,
// 1 on a startup error, 2 on a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		err = serve(ctx, args[1:], stderr, buildProvider)
	case "check-config":
		err = checkConfig(args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "trousseau", version)
	case "help", "-h", "-help", "--help":
		usage(stdout)
	default:
		fmt.Fprintf(stderr, "trousseau: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	default:
		fmt.Fprintln(stderr, "trousseau:", err)
		return 1
	}
}

// errUsage marks a command line the flag package already explained.
var errUsage = errors.New("usage error")

func usage(w io.Writer) {
	fmt.Fprint(w, `trousseau: Kubernetes KMS v2 plugin backed by Vault Transit

Usage:
  trousseau serve --config FILE [flags]   serve the KMS socket and the ops endpoint
  trousseau check-config --config FILE    validate a configuration and print it
  trousseau version                       print the version

Run "trousseau serve --help" for every setting.
`)
}
