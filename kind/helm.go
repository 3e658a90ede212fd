package kind

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	"helm.sh/helm/v4/pkg/storage/driver"
	"k8s.io/cli-runtime/pkg/genericclioptions"

	"github.com/trousseau-io/trousseau/charts"
)

// helmStorage is Helm's release storage. Release records in Secrets would
// be encrypted through the plugin they install, so a broken plugin could
// not even be upgraded; ConfigMaps stay readable (facts.md §3).
const helmStorage = "configmap"

// helmApply installs or upgrades an embedded chart and waits until its
// resources are ready (the plugin's readiness probe is its /readyz).
func (k *Kind) helmApply(ctx context.Context, chartName, release, namespace string, values map[string]any) error {
	chrt, err := charts.Load(chartName)
	if err != nil {
		return err
	}
	cfg, err := k.helmConfig(namespace)
	if err != nil {
		return err
	}
	const timeout = 5 * time.Minute
	history := action.NewHistory(cfg)
	history.Max = 1
	if _, err := history.Run(release); errors.Is(err, driver.ErrReleaseNotFound) {
		install := action.NewInstall(cfg)
		install.ReleaseName, install.Namespace, install.CreateNamespace = release, namespace, true
		install.WaitStrategy, install.Timeout = kube.StatusWatcherStrategy, timeout
		if _, err := install.RunWithContext(ctx, chrt, values); err != nil {
			return fmt.Errorf("helm install %s (chart %s) in %s: %w", release, chartName, namespace, err)
		}
		return nil
	} else if err != nil {
		return fmt.Errorf("helm history %s: %w", release, err)
	}
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = namespace
	upgrade.WaitStrategy, upgrade.Timeout = kube.StatusWatcherStrategy, timeout
	if _, err := upgrade.RunWithContext(ctx, release, chrt, values); err != nil {
		return fmt.Errorf("helm upgrade %s (chart %s) in %s: %w", release, chartName, namespace, err)
	}
	return nil
}

func (k *Kind) helmConfig(namespace string) (*action.Configuration, error) {
	flags := genericclioptions.NewConfigFlags(false)
	kubeconfig, ns := k.Kubeconfig(), namespace
	flags.KubeConfig, flags.Namespace = &kubeconfig, &ns
	cfg := action.NewConfiguration(action.ConfigurationSetLogger(slog.DiscardHandler))
	if err := cfg.Init(flags, namespace, helmStorage); err != nil {
		return nil, fmt.Errorf("helm init in namespace %s: %w", namespace, err)
	}
	return cfg, nil
}

// helmTest is `helm test`: it runs the release's test hooks (for
// charts/trousseau, a pod that waits until every DaemonSet pod is ready).
func (k *Kind) helmTest(release, namespace string) error {
	cfg, err := k.helmConfig(namespace)
	if err != nil {
		return err
	}
	t := action.NewReleaseTesting(cfg)
	t.Namespace, t.Timeout = namespace, 2*time.Minute
	_, shutdown, err := t.Run(release)
	if shutdown != nil {
		if serr := shutdown(); err == nil && serr != nil {
			err = serr
		}
	}
	if err != nil {
		return fmt.Errorf("helm test %s in %s: %w", release, namespace, err)
	}
	return nil
}
