package demo

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/migrate"
	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
	vaultdev "github.com/trousseau-io/trousseau/vault-dev"
)

// Rotation is what Rotate did.
type Rotation struct {
	OldKeyID, NewKeyID string
	VaultVersion       int
	Migrated           int
}

// keyChangeTimeout bounds the wait for a new key_id to reach the plugin
// and then the apiserver. The plugin refreshes every 20 s by default; the
// apiserver re-reads Status at least every minute.
const keyChangeTimeout = 3 * time.Minute

// Rotate is `mage rotate`: rotate the Transit key in Vault, wait until the
// plugin reports the new key_id and the apiserver writes with it, then
// migrate every Secret onto it.
func Rotate(ctx context.Context, rt runtime.Runtime, p *progress.Printer) (Rotation, error) {
	var r Rotation
	cs, err := runtime.Clientset(rt)
	if err != nil {
		return r, err
	}
	before, err := rt.PluginStatus(ctx)
	if err != nil {
		return r, fmt.Errorf("read the current key_id: %w", err)
	}
	r.OldKeyID = before.KeyID
	err = p.Step("rotate the Transit key in Vault", func() error {
		root, err := rt.VaultRoot(ctx)
		if err != nil {
			return err
		}
		mount, key := rt.Transit()
		r.VaultVersion, err = vaultdev.Rotate(ctx, root, mount, key)
		return err
	})
	if err != nil {
		return r, err
	}
	p.Detail("Transit key is now at version %d", r.VaultVersion)
	err = p.Step("wait for the plugin to report the new key_id", func() error {
		r.NewKeyID, err = WaitPluginKeyChange(ctx, rt, r.OldKeyID)
		return err
	})
	if err != nil {
		return r, err
	}
	p.Say("    key_id %s → %s", r.OldKeyID, r.NewKeyID)
	r.Migrated, err = migrateOnto(ctx, rt, cs, p, r.NewKeyID)
	return r, err
}

// Migrate is `mage migrate`: move every Secret onto the key_id the plugin
// reports now, without rotating. It is the fix when an audit finds stale
// objects after a rotation done directly in Vault, where `mage rotate`
// would rotate again.
func Migrate(ctx context.Context, rt runtime.Runtime, p *progress.Printer) (int, error) {
	cs, err := runtime.Clientset(rt)
	if err != nil {
		return 0, err
	}
	st, err := rt.PluginStatus(ctx)
	if err != nil {
		return 0, fmt.Errorf("read the current key_id: %w", err)
	}
	p.Say("    current key_id %s", st.KeyID)
	return migrateOnto(ctx, rt, cs, p, st.KeyID)
}

// migrateOnto waits until the apiserver writes with keyID, so no rewrite
// lands on the old key, then rewrites every Secret.
func migrateOnto(ctx context.Context, rt runtime.Runtime, cs kubernetes.Interface, p *progress.Printer, keyID string) (int, error) {
	if err := p.Step("wait for kube-apiserver to write with key_id "+keyID, func() error {
		return WaitForWriteKeyID(ctx, rt, cs, keyID)
	}); err != nil {
		return 0, err
	}
	var n int
	err := p.Step("storage migration: rewrite every Secret", func() error {
		var err error
		n, err = migrate.Secrets(ctx, cs)
		return err
	})
	return n, err
}

// WaitPluginKeyChange waits until the plugin's Status key_id differs from
// old and returns the new one.
func WaitPluginKeyChange(parent context.Context, rt runtime.Runtime, old string) (string, error) {
	started := time.Now()
	ctx, cancel := context.WithTimeout(parent, keyChangeTimeout)
	defer cancel()
	for {
		st, err := rt.PluginStatus(ctx)
		if err == nil && st.KeyID != "" && st.KeyID != old {
			return st.KeyID, nil
		}
		select {
		case <-ctx.Done():
			return "", runtime.WaitEnded(parent, "waiting for the plugin to report a new key_id", started, func(waited time.Duration) error {
				return fmt.Errorf("the plugin still reports key_id %s after %s (last error: %v): check its log (`go tool mage status` says where it is)", old, waited, err)
			})
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// ProbeSecret is written by WaitForWriteKeyID to see which key_id the
// apiserver currently writes with; it is deleted afterwards.
const ProbeSecret = "trousseau-key-probe"

// WaitForWriteKeyID waits until a Secret written now is stored under keyID,
// read back from etcd. Asking /readyz makes the apiserver re-check the
// plugin's Status (at most every 20 s) instead of its one-minute poll.
func WaitForWriteKeyID(parent context.Context, rt runtime.Runtime, cs kubernetes.Interface, keyID string) error {
	started := time.Now()
	ctx, cancel := context.WithTimeout(parent, keyChangeTimeout)
	defer cancel()
	probe := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: ProbeSecret, Namespace: metav1.NamespaceDefault},
		StringData: map[string]string{"purpose": "which key_id does the apiserver write with"}}
	defer cs.CoreV1().Secrets(probe.Namespace).Delete(context.WithoutCancel(ctx), probe.Name, metav1.DeleteOptions{})
	var seen string
	for {
		_, _ = cs.CoreV1().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		_ = cs.CoreV1().Secrets(probe.Namespace).Delete(ctx, probe.Name, metav1.DeleteOptions{})
		if _, err := cs.CoreV1().Secrets(probe.Namespace).Create(ctx, probe, metav1.CreateOptions{}); err == nil {
			kvs, err := rt.EtcdList(ctx, "/registry/secrets/"+probe.Namespace+"/"+probe.Name)
			if err == nil && len(kvs) == 1 {
				if env, err := etcdproof.Decode(kvs[0].Value); err == nil {
					seen = env.KeyID
					if seen == keyID {
						return nil
					}
				}
			}
		}
		select {
		case <-ctx.Done():
			return runtime.WaitEnded(parent, "waiting for kube-apiserver to write with key_id "+keyID, started, func(waited time.Duration) error {
				return fmt.Errorf("kube-apiserver still writes with key_id %q, not %s, after %s: its log says why "+
					"(look for \"failed to rotate DEK\"; `go tool mage status` says where the logs are)", seen, keyID, waited)
			})
		case <-time.After(2 * time.Second):
		}
	}
}
