package kind

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"helm.sh/helm/v4/pkg/action"
	"helm.sh/helm/v4/pkg/kube"
	releasecommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
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
	if err := unblockPending(cfg.Releases, release); err != nil {
		return err
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

// unblockPending marks a release whose last operation never finished
// (pending-install/upgrade/rollback: an Up interrupted by Ctrl-C or killed
// during Helm's wait) as failed. Helm refuses to upgrade a pending release
// ("another operation is in progress") and nothing else would ever finish
// it, so without this an interrupted Up could not be repaired by running it
// again; upgrading from a failed release is what Helm allows.
func unblockPending(releases *storage.Storage, name string) error {
	last, err := releases.Last(name)
	if err != nil {
		return fmt.Errorf("helm: read the last release of %s: %w", name, err)
	}
	rel, ok := last.(*releasev1.Release)
	if !ok || rel.Info == nil || !rel.Info.Status.IsPending() {
		return nil
	}
	rel.Info.Description = fmt.Sprintf("%s interrupted; marked failed so the appliance can upgrade", rel.Info.Status)
	rel.Info.Status = releasecommon.StatusFailed
	if err := releases.Update(rel); err != nil {
		return fmt.Errorf("helm: mark the interrupted release %s (revision %d) failed: %w", name, rel.Version, err)
	}
	return nil
}
