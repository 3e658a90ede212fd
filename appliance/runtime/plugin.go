package runtime

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	kmsapi "k8s.io/kms/apis/v2"
)

// PluginStatusAt calls the KMS Status RPC on a plugin socket, as the
// apiserver does. Runtimes whose socket is reachable from the host use it.
func PluginStatusAt(ctx context.Context, socketPath string) (PluginStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+socketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return PluginStatus{}, fmt.Errorf("dial plugin socket %s: %w", socketPath, err)
	}
	defer conn.Close()
	resp, err := kmsapi.NewKeyManagementServiceClient(conn).Status(ctx, &kmsapi.StatusRequest{})
	if err != nil {
		return PluginStatus{}, fmt.Errorf("plugin Status on %s: %w", socketPath, err)
	}
	return PluginStatus{Version: resp.Version, Healthz: resp.Healthz, KeyID: resp.KeyId}, nil
}
