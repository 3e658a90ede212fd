package kind

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"

	"github.com/trousseau-io/trousseau/appliance/progress"
)

// pluginImageRef is the image the chart runs; pullPolicy Never, because
// it exists only inside the nodes.
func pluginImageRef() string { return PluginImage + ":" + PluginImageTag }

// buildAndLoadImage builds the plugin image from the repository's
// Dockerfile, saves it and loads it into every node (kind's
// LoadImageArchive, the same as `kind load image-archive`).
func (k *Kind) buildAndLoadImage(ctx context.Context) error {
	build := exec.CommandContext(ctx, "docker", "build", "-t", pluginImageRef(), "--build-arg", "VERSION=kind-dev",
		"-f", filepath.Join(k.repo, "Dockerfile"), k.repo)
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("docker build of the plugin image: %w\n%s\nFix: make `go build ./plugin/cmd/trousseau` pass, then retry", err, progress.Tail(string(out), 20))
	}
	if err := os.MkdirAll(filepath.Dir(k.imageArchive()), 0o755); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "docker", "save", "-o", k.imageArchive(), pluginImageRef()).CombinedOutput(); err != nil {
		return fmt.Errorf("docker save %s: %w\n%s", pluginImageRef(), err, out)
	}
	all, err := k.provider.ListNodes(k.opts.Name)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	return loadArchive(all, k.imageArchive())
}

// loadArchive loads the image archive into every Kubernetes node. An HA
// cluster also has kind's external load balancer container, which has no
// containerd (LoadImageArchive would fail on it), so only the internal nodes
// are loaded, as `kind load` does.
func loadArchive(all []nodes.Node, archive string) error {
	internal, err := nodeutils.InternalNodes(all)
	if err != nil {
		return fmt.Errorf("read the node roles: %w", err)
	}
	for _, n := range internal {
		f, err := os.Open(archive)
		if err != nil {
			return err
		}
		err = nodeutils.LoadImageArchive(n, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("load the plugin image into node %s: %w", n, err)
		}
	}
	return nil
}

// imageID is the built image's ID; the chart's pods carry it as an
// annotation so a rebuilt image rolls them.
func imageID(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "docker", "image", "inspect", "-f", "{{.Id}}", pluginImageRef()).Output()
	if err != nil {
		return "", fmt.Errorf("inspect %s: %w", pluginImageRef(), err)
	}
	return strings.TrimSpace(string(out)), nil
}
