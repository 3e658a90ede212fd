// Package demo is the narrated appliance demo and the operations behind the
// appliance's mage targets (rotate, audit, status, down, tools, e2e). Every
// operation is written once against runtime.Runtime, so it runs the same on
// the local and the kind runtime.
package demo

import (
	"bytes"
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/etcdproof"
	"github.com/trousseau-io/trousseau/appliance/progress"
	"github.com/trousseau-io/trousseau/appliance/runtime"
)

// Run is the demo: bring the stack up KMS-first, store realistic Secrets,
// show one of them through kubectl and in etcd, rotate the key, migrate,
// audit, and tell the person how to poke at the stack and stop it. It is
// safe to run again on a running stack. started is when the target began,
// for the closing "Done in".
func Run(ctx context.Context, rt runtime.Runtime, p *progress.Printer, started time.Time) error {
	p.Say("Trousseau demo: Kubernetes Secrets encrypted by Vault Transit through a KMS v2 plugin (%s runtime)", rt.Name())
	if err := rt.Up(ctx, controlplane.KMSFirst); err != nil {
		return err
	}
	cs, err := runtime.Clientset(rt)
	if err != nil {
		return err
	}
	secrets, err := Secrets()
	if err != nil {
		return err
	}
	err = p.Step(fmt.Sprintf("store %d Secrets in namespace %s (Opaque, kubernetes.io/tls, dockerconfigjson, basic-auth, one of 500 KiB)", len(secrets), Namespace), func() error {
		return Apply(ctx, cs, secrets)
	})
	if err != nil {
		return err
	}
	err = p.Step("read them back through the apiserver", func() error {
		for _, want := range secrets {
			got, err := cs.CoreV1().Secrets(want.Namespace).Get(ctx, want.Name, metav1.GetOptions{})
			if err != nil {
				return fmt.Errorf("read Secret %s: %w", want.Name, err)
			}
			for k, v := range want.Data {
				if !bytes.Equal(got.Data[k], v) {
					return fmt.Errorf("Secret %s key %s came back different", want.Name, k)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := ShowOne(ctx, rt, cs, p, ShowcaseSecret); err != nil {
		return err
	}
	if metrics, err := runtime.APIServerMetrics(ctx, cs); err == nil {
		if st, err := rt.PluginStatus(ctx); err == nil && runtime.MetricHasKeyID(metrics, runtime.MetricKeyIDUsed, st.KeyID) {
			p.Say("  ✓ kube-apiserver metric %s carries %s = sha256(key_id)", runtime.MetricKeyIDUsed, runtime.KeyIDHash(st.KeyID)[:19]+"…")
		}
	}

	p.Say("")
	p.Say("▸ key rotation")
	rot, err := Rotate(ctx, rt, p)
	if err != nil {
		return err
	}
	p.Say("    %d Secrets rewritten onto key_id %s (Vault key version %d)", rot.Migrated, rot.NewKeyID, rot.VaultVersion)
	reports, err := Audit(ctx, rt, p)
	if err != nil {
		return err
	}
	for _, r := range reports {
		if r.Resource == "secrets" {
			p.Say("  ✓ %d/%d Secrets on key_id %s", r.Current, r.Total, r.CurrentKeyID)
		}
	}
	kvs, err := rt.EtcdList(ctx, "/registry/secrets/"+Namespace+"/"+ShowcaseSecret)
	if err != nil || len(kvs) != 1 {
		return fmt.Errorf("read %s back from etcd after the migration: %v", ShowcaseSecret, err)
	}
	env, err := etcdproof.Decode(kvs[0].Value)
	if err != nil {
		return err
	}
	p.Say("  ✓ in etcd, %s/%s now carries key_id %s (Vault key version %d)", Namespace, ShowcaseSecret, env.KeyID, env.VaultKeyVersion)

	p.Say("")
	p.Say("Done in %s. The stack keeps running:", time.Since(started).Round(time.Second))
	p.Say("  KUBECONFIG=%s kubectl get secrets -A", rt.Kubeconfig())
	p.Say("  go tool mage status    what runs where, and whether the plugin is healthy")
	p.Say("  go tool mage rotate    rotate the Transit key and migrate every Secret")
	p.Say("  go tool mage audit     check from etcd that nothing is plaintext or on an old key")
	p.Say("  go tool mage migrate   move every Secret onto the current key without rotating")
	p.Say("  go tool mage down      stop everything; the dev Vault's keys, and so every Secret, are discarded")
	if st, err := rt.Status(ctx); err == nil && st.Logs != "" {
		p.Say("Logs: %s", st.Logs)
	}
	p.Say("Note: the dev Vault keeps its keys in memory. When it stops, the Secrets it encrypted are gone for good;")
	p.Say("point the plugin at a persistent Vault (chart values vault.address, auth.*) for anything you want to keep.")
	return nil
}
