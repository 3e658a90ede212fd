// Package migrate does the storage migration: it rewrites every Secret
// unchanged, so the apiserver re-encrypts it with the current key.
package migrate

import (
	"context"
	"fmt"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
)

// Secrets rewrites every Secret unchanged. The apiserver re-encrypts an
// object on write when it was read through a stale transformer (an older
// key_id, or identity while KMS writes), so this moves everything onto the
// current key. A Secret deleted meanwhile needs no migration; one changed
// meanwhile is read again and rewritten. It returns how many Secrets it
// rewrote.
func Secrets(ctx context.Context, cs kubernetes.Interface) (int, error) {
	var done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := cs.CoreV1().Secrets(metav1.NamespaceAll).List(ctx, opts)
		if err != nil {
			return int(done.Load()), fmt.Errorf("list Secrets for migration: %w", err)
		}
		for i := range list.Items {
			s := list.Items[i]
			g.Go(func() error {
				err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
					cur, err := cs.CoreV1().Secrets(s.Namespace).Get(gctx, s.Name, metav1.GetOptions{})
					if err != nil {
						return err
					}
					_, err = cs.CoreV1().Secrets(s.Namespace).Update(gctx, cur, metav1.UpdateOptions{})
					return err
				})
				if apierrors.IsNotFound(err) {
					return nil
				}
				if err != nil {
					return fmt.Errorf("rewrite Secret %s/%s: %w", s.Namespace, s.Name, err)
				}
				done.Add(1)
				return nil
			})
		}
		if list.Continue == "" {
			break
		}
		opts.Continue = list.Continue
	}
	err := g.Wait()
	return int(done.Load()), err
}
