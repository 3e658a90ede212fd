package migrate

import (
	"context"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

var secretsResource = schema.GroupResource{Resource: "secrets"}

func secret(ns, name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Data: map[string][]byte{"k": []byte(name)}}
}

// TestSecretsRewritesEverySecretUnchanged: every Secret in every namespace
// is written back as it was read; one that conflicts is read again and
// rewritten, one deleted meanwhile is skipped and not counted.
func TestSecretsRewritesEverySecretUnchanged(t *testing.T) {
	cs := fake.NewClientset(secret("default", "a"), secret("kube-system", "b"), secret("team", "conflicts"), secret("team", "gone"))
	var mu sync.Mutex
	updates := map[string]int{}
	conflicted := false
	cs.PrependReactor("get", "secrets", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		if name := a.(k8stesting.GetAction).GetName(); name == "gone" {
			return true, nil, apierrors.NewNotFound(secretsResource, name)
		}
		return false, nil, nil
	})
	cs.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		s := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret)
		mu.Lock()
		defer mu.Unlock()
		if s.Name == "conflicts" && !conflicted {
			conflicted = true
			return true, nil, apierrors.NewConflict(secretsResource, s.Name, nil)
		}
		if string(s.Data["k"]) != s.Name {
			t.Errorf("Secret %s/%s was changed on rewrite: %q", s.Namespace, s.Name, s.Data["k"])
		}
		updates[s.Namespace+"/"+s.Name]++
		return false, nil, nil
	})
	n, err := Secrets(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Errorf("rewrote %d Secrets, want 3 (a, b, conflicts; gone was deleted)", n)
	}
	for _, k := range []string{"default/a", "kube-system/b", "team/conflicts"} {
		if updates[k] != 1 {
			t.Errorf("%s written %d times, want once", k, updates[k])
		}
	}
	if !conflicted {
		t.Error("the conflict was never injected: the retry path is untested")
	}
}

// TestSecretsNamesTheSecretItCouldNotRewrite: a refused write stops the
// migration with an error that says which Secret.
func TestSecretsNamesTheSecretItCouldNotRewrite(t *testing.T) {
	cs := fake.NewClientset(secret("team", "locked"))
	cs.PrependReactor("update", "secrets", func(k8stesting.Action) (bool, k8sruntime.Object, error) {
		return true, nil, apierrors.NewForbidden(secretsResource, "locked", nil)
	})
	n, err := Secrets(context.Background(), cs)
	if err == nil || !strings.Contains(err.Error(), "team/locked") {
		t.Fatalf("rewrote %d, err %v: want an error naming team/locked", n, err)
	}
}
