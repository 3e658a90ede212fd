package demo

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/trousseau-io/trousseau/appliance/pki"
)

// Namespace holds the demo's Secrets.
const Namespace = "trousseau-demo"

// ShowcaseSecret is the Secret the demo shows side by side.
const ShowcaseSecret = "db-credentials"

// showcaseKey is the data key whose value the demo looks for in etcd.
const showcaseKey = "password"

// Secrets returns the realistic Secrets the demo stores: the types people
// actually keep in clusters, one of them ~500 KiB to show that size does
// not matter to envelope encryption. Values are random per call.
func Secrets() ([]*corev1.Secret, error) {
	cert, key, err := pki.SelfSigned("shop.example.test")
	if err != nil {
		return nil, fmt.Errorf("generate demo TLS certificate: %w", err)
	}
	password, err := randomText(18)
	if err != nil {
		return nil, err
	}
	registryPass, err := randomText(24)
	if err != nil {
		return nil, err
	}
	docker, err := json.Marshal(map[string]any{"auths": map[string]any{"registry.example.test": map[string]string{
		"username": "ci-bot", "password": registryPass,
		"auth": base64.StdEncoding.EncodeToString([]byte("ci-bot:" + registryPass)),
	}}})
	if err != nil {
		return nil, err
	}
	big := make([]byte, 500*1024)
	if _, err := rand.Read(big); err != nil {
		return nil, err
	}
	apiKey, err := randomText(32)
	if err != nil {
		return nil, err
	}
	secret := func(name string, typ corev1.SecretType, data map[string][]byte) *corev1.Secret {
		return &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{"app.kubernetes.io/part-of": "trousseau-demo"}},
			Type:       typ, Data: data,
		}
	}
	return []*corev1.Secret{
		secret(ShowcaseSecret, corev1.SecretTypeOpaque, map[string][]byte{
			"username": []byte("shop"), showcaseKey: []byte(password), "host": []byte("postgres.shop.svc:5432"),
		}),
		secret("payments-api", corev1.SecretTypeOpaque, map[string][]byte{"api-key": []byte(apiKey)}),
		secret("shop-tls", corev1.SecretTypeTLS, map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key}),
		secret("registry-pull", corev1.SecretTypeDockerConfigJson, map[string][]byte{corev1.DockerConfigJsonKey: docker}),
		secret("admin-login", corev1.SecretTypeBasicAuth, map[string][]byte{
			corev1.BasicAuthUsernameKey: []byte("admin"), corev1.BasicAuthPasswordKey: []byte(password + "!"),
		}),
		secret("ml-model-weights", corev1.SecretTypeOpaque, map[string][]byte{"weights.bin": big}),
	}, nil
}

// Apply creates the namespace and Secrets, or updates them, so a re-run of
// the demo converges instead of failing on "already exists".
func Apply(ctx context.Context, cs kubernetes.Interface, secrets []*corev1.Secret) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", Namespace, err)
	}
	for _, s := range secrets {
		_, err := cs.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Types are immutable, so replace rather than patch.
			if err = cs.CoreV1().Secrets(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{}); err == nil {
				_, err = cs.CoreV1().Secrets(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
			}
		}
		if err != nil {
			return fmt.Errorf("store Secret %s/%s: %w", s.Namespace, s.Name, err)
		}
	}
	return nil
}

func randomText(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("generate demo value: %w", err)
	}
	return hex.EncodeToString(b)[:n], nil
}
