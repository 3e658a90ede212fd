// Package etcdproof reads what etcd really stores and judges it: whether a
// value carries the trousseau KMS v2 prefix, what its decoded envelope says
// (key_id, the wrapped DEK seed, the Vault key version inside it), and an
// audit of every object of a resource by key_id. It trusts nothing the
// apiserver reports about itself.
package etcdproof

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	kmsv2api "k8s.io/apiserver/pkg/storage/value/encrypt/envelope/kmsv2/v2"

	"github.com/trousseau-io/trousseau/appliance/controlplane"
	"github.com/trousseau-io/trousseau/appliance/runtime"
	"github.com/trousseau-io/trousseau/plugin/ciphertext"
)

// Prefix starts every value the apiserver wrote through trousseau.
const Prefix = "k8s:enc:kms:v2:" + controlplane.ProviderName + ":"

// Envelope is a decoded KMS v2 value.
type Envelope struct {
	// KeyID is the key_id the plugin returned from Encrypt.
	KeyID string
	// EncryptedSeed is the plugin's ciphertext of the DEK seed, stored in
	// clear next to the data.
	EncryptedSeed []byte
	// Provider is the trousseau provider name inside EncryptedSeed.
	Provider string
	// VaultCiphertext is the provider payload when it is a Vault Transit
	// ciphertext ("vault:vN:…"), empty otherwise.
	VaultCiphertext string
	// VaultKeyVersion is N from VaultCiphertext, 0 when not Vault.
	VaultKeyVersion int
	// DataSize is the size of the AES-GCM encrypted object.
	DataSize int
	// Annotations are the plugin's annotations.
	Annotations map[string][]byte
}

// Decode parses a value stored by the apiserver through trousseau. It fails
// on plaintext and on any other provider's prefix.
func Decode(value []byte) (*Envelope, error) {
	if !bytes.HasPrefix(value, []byte(Prefix)) {
		return nil, fmt.Errorf("value does not start with %q (starts with %q)", Prefix, excerpt(value, 24))
	}
	var obj kmsv2api.EncryptedObject
	if err := proto.Unmarshal(value[len(Prefix):], &obj); err != nil {
		return nil, fmt.Errorf("decode KMS v2 EncryptedObject: %w", err)
	}
	env := &Envelope{
		KeyID:         obj.GetKeyID(),
		EncryptedSeed: obj.GetEncryptedDEKSource(),
		DataSize:      len(obj.GetEncryptedData()),
		Annotations:   obj.GetAnnotations(),
	}
	provider, payload, err := ciphertext.Decode(env.EncryptedSeed)
	if err != nil {
		return env, fmt.Errorf("encrypted DEK seed is not a trousseau ciphertext: %w", err)
	}
	env.Provider = provider
	if v, ok := vaultVersion(payload); ok {
		env.VaultCiphertext = string(payload)
		env.VaultKeyVersion = v
	}
	return env, nil
}

// vaultVersion parses "vault:v<N>:<base64>".
func vaultVersion(payload []byte) (int, bool) {
	s := string(payload)
	if !strings.HasPrefix(s, "vault:v") {
		return 0, false
	}
	rest := s[len("vault:v"):]
	i := strings.IndexByte(rest, ':')
	if i <= 0 || i == len(rest)-1 {
		return 0, false
	}
	n, err := strconv.Atoi(rest[:i])
	if err != nil || n < 1 {
		return 0, false
	}
	return n, true
}

// Report counts the objects of one resource by how they are stored.
type Report struct {
	Resource     string
	Total        int
	Plaintext    []string // etcd keys stored without encryption
	Undecodable  []string // prefixed but not a valid envelope
	Current      int      // on the plugin's current key_id
	Older        map[string]int
	OlderKeys    []string // etcd keys of the objects counted in Older
	CurrentKeyID string
}

// Stale is the number of objects on an older key_id.
func (r Report) Stale() int {
	n := 0
	for _, c := range r.Older {
		n += c
	}
	return n
}

// OK is true when every object is encrypted with the current key_id.
func (r Report) OK() bool {
	return len(r.Plaintext) == 0 && len(r.Undecodable) == 0 && r.Stale() == 0
}

// String is the audit line a person reads.
func (r Report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d/%d on key_id %s", r.Resource, r.Current, r.Total, r.CurrentKeyID)
	if len(r.Plaintext) > 0 {
		fmt.Fprintf(&b, ", %d PLAINTEXT", len(r.Plaintext))
	}
	if len(r.Undecodable) > 0 {
		fmt.Fprintf(&b, ", %d UNDECODABLE", len(r.Undecodable))
	}
	keys := make([]string, 0, len(r.Older))
	for k := range r.Older {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, ", %d on older key_id %s", r.Older[k], k)
	}
	return b.String()
}

// Classify audits raw values of one resource against the current key_id.
func Classify(resource, currentKeyID string, kvs []runtime.KV) Report {
	r := Report{Resource: resource, CurrentKeyID: currentKeyID, Older: map[string]int{}}
	for _, kv := range kvs {
		r.Total++
		if !bytes.HasPrefix(kv.Value, []byte("k8s:enc:")) {
			r.Plaintext = append(r.Plaintext, kv.Key)
			continue
		}
		env, err := Decode(kv.Value)
		switch {
		case err != nil:
			r.Undecodable = append(r.Undecodable, kv.Key)
		case env.KeyID == currentKeyID:
			r.Current++
		default:
			r.Older[env.KeyID]++
			r.OlderKeys = append(r.OlderKeys, kv.Key)
		}
	}
	return r
}

// Audit reads every object of the encrypted resources straight from etcd and
// classifies it against the plugin's current key_id.
func Audit(ctx context.Context, rt runtime.Runtime) ([]Report, error) {
	st, err := rt.PluginStatus(ctx)
	if err != nil {
		return nil, fmt.Errorf("audit needs the plugin's current key_id: %w", err)
	}
	var reports []Report
	for _, res := range controlplane.EncryptedResources {
		kvs, err := rt.EtcdList(ctx, "/registry/"+res+"/")
		if err != nil {
			return nil, fmt.Errorf("audit %s: %w", res, err)
		}
		reports = append(reports, Classify(res, st.KeyID, kvs))
	}
	return reports, nil
}

// Hexdump renders the first n bytes of value like `hexdump -C`, so the demo
// can show the raw bytes next to what kubectl shows.
func Hexdump(value []byte, n int) string {
	if len(value) < n {
		n = len(value)
	}
	var b strings.Builder
	for off := 0; off < n; off += 16 {
		end := min(off+16, n)
		fmt.Fprintf(&b, "%08x  ", off)
		for i := off; i < off+16; i++ {
			if i < end {
				fmt.Fprintf(&b, "%02x ", value[i])
			} else {
				b.WriteString("   ")
			}
			if i == off+7 {
				b.WriteByte(' ')
			}
		}
		b.WriteString(" |")
		for _, c := range value[off:end] {
			if c >= 0x20 && c < 0x7f {
				b.WriteByte(c)
			} else {
				b.WriteByte('.')
			}
		}
		b.WriteString("|\n")
	}
	if n < len(value) {
		fmt.Fprintf(&b, "… %d more bytes\n", len(value)-n)
	}
	return b.String()
}

func excerpt(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}
