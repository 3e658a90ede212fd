package kind

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// migrate rewrites every Secret unchanged; the apiserver re-encrypts it
// with the first provider (facts.md §2). A Secret that changed or vanished
// meanwhile was rewritten by someone else, which is just as good.
func migrate(ctx context.Context, cs kubernetes.Interface) (int, error) {
	list, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("list Secrets to migrate: %w", err)
	}
	n := 0
	for i := range list.Items {
		s := &list.Items[i]
		_, err := cs.CoreV1().Secrets(s.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return n, fmt.Errorf("rewrite Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
		n++
	}
	return n, nil
}
