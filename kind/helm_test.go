package kind

import (
	"testing"

	releasecommon "helm.sh/helm/v4/pkg/release/common"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	"helm.sh/helm/v4/pkg/storage"
	"helm.sh/helm/v4/pkg/storage/driver"
)

// TestInterruptedHelmReleaseIsUpgradable: an Up interrupted during Helm's
// wait leaves the release pending, which Helm never upgrades; the next Up
// marks it failed (and only then) so its upgrade repairs the release.
func TestInterruptedHelmReleaseIsUpgradable(t *testing.T) {
	rel := func(version int, status releasecommon.Status) *releasev1.Release {
		return &releasev1.Release{Name: "vault", Namespace: VaultNamespace, Version: version, Info: &releasev1.Info{Status: status}}
	}
	for _, tc := range []struct {
		name    string
		history []*releasev1.Release
		want    releasecommon.Status
	}{
		{"install interrupted", []*releasev1.Release{rel(1, releasecommon.StatusPendingInstall)}, releasecommon.StatusFailed},
		{"upgrade interrupted", []*releasev1.Release{rel(1, releasecommon.StatusSuperseded), rel(2, releasecommon.StatusPendingUpgrade)}, releasecommon.StatusFailed},
		{"rollback interrupted", []*releasev1.Release{rel(1, releasecommon.StatusSuperseded), rel(2, releasecommon.StatusPendingRollback)}, releasecommon.StatusFailed},
		{"deployed", []*releasev1.Release{rel(1, releasecommon.StatusSuperseded), rel(2, releasecommon.StatusDeployed)}, releasecommon.StatusDeployed},
		{"failed", []*releasev1.Release{rel(1, releasecommon.StatusFailed)}, releasecommon.StatusFailed},
	} {
		store := storage.Init(driver.NewMemory())
		for _, r := range tc.history {
			if err := store.Create(r); err != nil {
				t.Fatal(err)
			}
		}
		if err := unblockPending(store, "vault"); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		last, err := store.Last("vault")
		if err != nil {
			t.Fatal(err)
		}
		got := last.(*releasev1.Release)
		if got.Info.Status != tc.want || got.Version != len(tc.history) {
			t.Errorf("%s: last release is revision %d %s, want revision %d %s", tc.name, got.Version, got.Info.Status, len(tc.history), tc.want)
		}
	}
}
