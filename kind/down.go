package kind

import (
	"context"
	"fmt"
	"os"
)

// Down implements runtime.Runtime: it deletes the cluster (a no-op when it
// is gone) and the runtime's state, including the dev Vault's root token,
// which is useless once its in-memory Vault is gone.
func (k *Kind) Down(context.Context) error {
	return k.p.Step(fmt.Sprintf("delete kind cluster %q and %s", k.opts.Name, k.opts.StateDir), func() error {
		exists, err := k.clusterExists()
		if err != nil {
			return err
		}
		if exists {
			if err := k.provider.Delete(k.opts.Name, k.Kubeconfig()); err != nil {
				return fmt.Errorf("kind delete cluster %s: %w", k.opts.Name, err)
			}
		}
		if err := os.RemoveAll(k.opts.StateDir); err != nil {
			return fmt.Errorf("remove %s: %w", k.opts.StateDir, err)
		}
		return nil
	})
}
