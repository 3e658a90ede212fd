package pki

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"
)

func TestEnsureIssuesCertsChainingToTheCAAndKeepsThem(t *testing.T) {
	dir := t.TempDir()
	f, err := Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := os.ReadFile(f.CACert)
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("CA is not PEM")
	}
	for _, c := range []struct {
		cert, key string
		usage     x509.ExtKeyUsage
		host      string
	}{
		{f.ServingCert, f.ServingKey, x509.ExtKeyUsageServerAuth, "127.0.0.1"},
		{f.AdminCert, f.AdminKey, x509.ExtKeyUsageClientAuth, ""},
	} {
		pair, err := tls.LoadX509KeyPair(c.cert, c.key)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(pair.Certificate[0])
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: c.host, KeyUsages: []x509.ExtKeyUsage{c.usage}}); err != nil {
			t.Errorf("%s does not verify: %v", c.cert, err)
		}
	}
	admin, _ := tls.LoadX509KeyPair(f.AdminCert, f.AdminKey)
	leaf, _ := x509.ParseCertificate(admin.Certificate[0])
	if len(leaf.Subject.Organization) != 1 || leaf.Subject.Organization[0] != "system:masters" {
		t.Errorf("admin organization = %v, want [system:masters]", leaf.Subject.Organization)
	}
	if st, _ := os.Stat(f.CAKey); st.Mode().Perm() != 0o600 {
		t.Errorf("CA key mode = %v, want 0600", st.Mode().Perm())
	}

	before, _ := os.ReadFile(f.AdminCert)
	if _, err := Ensure(dir); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(f.AdminCert)
	if string(before) != string(after) {
		t.Error("second Ensure regenerated the admin certificate; existing kubeconfigs would break")
	}
}
