package kind

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	vaultapi "github.com/hashicorp/vault/api"
)

// unsealMaterial is what initialising the persistent dev Vault returns. It
// is kept on the host in the state directory (0600), never in the cluster:
// a Kubernetes Secret holding it would be encrypted with a key inside the
// very Vault it unseals.
type unsealMaterial struct {
	UnsealKeysB64 []string `json:"unseal_keys_b64"`
	RootToken     string   `json:"root_token"`
}

// initAndUnseal brings a persistent single-node Vault to unsealed: it
// initialises it once with one key share, saving the material to initFile
// before anything else can fail, and unseals it with that material after
// every restart. It returns the root token.
func initAndUnseal(ctx context.Context, c *vaultapi.Client, initFile string) (string, error) {
	st, err := c.Sys().SealStatusWithContext(ctx)
	if err != nil {
		return "", fmt.Errorf("read the Vault seal status: %w", err)
	}
	var m unsealMaterial
	if !st.Initialized {
		resp, err := c.Sys().InitWithContext(ctx, &vaultapi.InitRequest{SecretShares: 1, SecretThreshold: 1})
		if err != nil {
			return "", fmt.Errorf("initialise the persistent Vault: %w", err)
		}
		m = unsealMaterial{UnsealKeysB64: resp.KeysB64, RootToken: resp.RootToken}
		if err := writePrivateJSON(initFile, m); err != nil {
			return "", fmt.Errorf("save the unseal material (the Vault is initialised, and without this file its data is lost): %w", err)
		}
	} else {
		b, err := os.ReadFile(initFile)
		if errors.Is(err, os.ErrNotExist) {
			// The caller names the command that starts over: it depends on the instance.
			return "", fmt.Errorf("the persistent Vault is initialised but its unseal material is gone (%w): its data, and every "+
				"Secret encrypted with it, cannot be recovered", err)
		}
		if err != nil {
			return "", err
		}
		if err := json.Unmarshal(b, &m); err != nil || len(m.UnsealKeysB64) == 0 || m.RootToken == "" {
			return "", fmt.Errorf("%s is not the unseal material this appliance wrote (%v)", initFile, err)
		}
	}
	if st, err = c.Sys().SealStatusWithContext(ctx); err != nil {
		return "", fmt.Errorf("read the Vault seal status: %w", err)
	}
	for _, key := range m.UnsealKeysB64 {
		if !st.Sealed {
			break
		}
		if st, err = c.Sys().UnsealWithContext(ctx, key); err != nil {
			return "", fmt.Errorf("unseal the persistent Vault with the key in %s: %w", initFile, err)
		}
	}
	if st.Sealed {
		return "", fmt.Errorf("the persistent Vault is still sealed after using the keys in %s: was it re-initialised elsewhere?", initFile)
	}
	return m.RootToken, nil
}

// writePrivateJSON writes v to path with mode 0600, atomically.
func writePrivateJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writePrivateFile(path, b)
}
