package ciphertext

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/trousseau-io/trousseau/plugin/kms"
)

type goldenFile struct {
	Format  int `json:"format"`
	Vectors []struct {
		Name       string `json:"name"`
		Provider   string `json:"provider"`
		PayloadHex string `json:"payloadHex"`
		EncodedHex string `json:"encodedHex"`
	} `json:"vectors"`
}

// TestFieldCase12GoldenCiphertextsFromFormatV1StillDecode freezes format v1:
// bytes written by any released plugin must decode to the same provider and
// payload, and this version must still write exactly those bytes.
func TestFieldCase12GoldenCiphertextsFromFormatV1StillDecode(t *testing.T) {
	raw, err := os.ReadFile("testdata/golden-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatalf("parse golden file: %v", err)
	}
	if g.Format != 1 || len(g.Vectors) == 0 {
		t.Fatalf("golden file must hold format 1 vectors, got format %d with %d vectors", g.Format, len(g.Vectors))
	}
	for _, v := range g.Vectors {
		t.Run(v.Name, func(t *testing.T) {
			encoded, err := hex.DecodeString(v.EncodedHex)
			if err != nil {
				t.Fatal(err)
			}
			payload, err := hex.DecodeString(v.PayloadHex)
			if err != nil {
				t.Fatal(err)
			}
			gotProvider, gotPayload, err := Decode(encoded)
			if err != nil {
				t.Fatalf("Decode golden bytes: %v", err)
			}
			if gotProvider != v.Provider || !bytes.Equal(gotPayload, payload) {
				t.Fatalf("Decode = (%q, %x), want (%q, %x)", gotProvider, gotPayload, v.Provider, payload)
			}
			reencoded, err := Encode(v.Provider, payload)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(reencoded, encoded) {
				t.Fatalf("Encode no longer writes format v1 bytes:\n got %x\nwant %x", reencoded, encoded)
			}
		})
	}
}

func TestFieldCase12GarbageAndTruncatedCiphertextIsInvalidInput(t *testing.T) {
	valid, err := Encode("vault-transit", []byte("vault:v1:abc"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		in      []byte
		wantErr string
	}{
		{"empty", nil, "missing"},
		{"one byte", []byte("t"), "missing"},
		{"raw vault ciphertext without envelope", []byte("vault:v1:abc"), "missing"},
		{"header only", valid[:3], "truncated"},
		{"name cut short", valid[:8], "truncated"},
		{"no payload", valid[:4+len("vault-transit")], "truncated"},
		{"future version", append([]byte{'t', 'r', 0x02}, valid[3:]...), "version 2 is unknown"},
		{"version zero", append([]byte{'t', 'r', 0x00}, valid[3:]...), "version 0 is unknown"},
		{"zero-length provider", []byte{'t', 'r', 0x01, 0x00, 'x', 'y'}, "corrupt"},
		{"provider with uppercase", []byte{'t', 'r', 0x01, 0x01, 'X', 'y'}, "corrupt"},
		{"provider with control byte", []byte{'t', 'r', 0x01, 0x01, 0x1b, 'y'}, "corrupt"},
		{"over the apiserver limit", append(append([]byte{}, valid...), make([]byte, MaxSize)...), "limit"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Decode(tc.in)
			if err == nil {
				t.Fatal("Decode accepted invalid bytes")
			}
			if kms.KindOf(err) != kms.InvalidInput {
				t.Fatalf("kind = %v, want invalid_input (err: %v)", kms.KindOf(err), err)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %q does not contain %q", err, tc.wantErr)
			}
		})
	}
}

func TestEncodeRejectsWhatTheApiserverWouldRefuse(t *testing.T) {
	fits := make([]byte, MaxSize-headerSize-len("vault-transit"))
	if _, err := Encode("vault-transit", fits); err != nil {
		t.Fatalf("a %d-byte encoding must fit: %v", MaxSize, err)
	}
	cases := []struct {
		name     string
		provider string
		payload  []byte
		wantErr  string
	}{
		{"one byte over the limit", "vault-transit", append(fits, 0), "exceed the apiserver limit of 1024"},
		{"empty payload", "vault-transit", nil, "empty ciphertext"},
		{"empty provider", "", []byte("x"), "1 to 32 bytes"},
		{"long provider", strings.Repeat("a", MaxProviderName+1), []byte("x"), "1 to 32 bytes"},
		{"provider with colon", "vault:transit", []byte("x"), "only a-z"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Encode(tc.provider, tc.payload)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("Encode error = %v, want one containing %q", err, tc.wantErr)
			}
			if kms.KindOf(err) != kms.Internal {
				t.Fatalf("kind = %v, want internal: a provider bug, not the caller's data", kms.KindOf(err))
			}
		})
	}
}

// FuzzDecode feeds arbitrary bytes to Decode (field case 12: garbage never
// panics). Bytes that decode must re-encode to themselves, and any input used
// as a payload must survive Encode then Decode.
func FuzzDecode(f *testing.F) {
	raw, err := os.ReadFile("testdata/golden-v1.json")
	if err != nil {
		f.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(raw, &g); err != nil {
		f.Fatal(err)
	}
	for _, v := range g.Vectors {
		b, err := hex.DecodeString(v.EncodedHex)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte("tr"))
	f.Add([]byte{'t', 'r', 0x01, 0xff})
	f.Add([]byte("vault:v1:AAAA"))

	f.Fuzz(func(t *testing.T, b []byte) {
		provider, payload, err := Decode(b)
		if err == nil {
			again, err := Encode(provider, payload)
			if err != nil {
				t.Fatalf("Decode accepted %x but Encode refuses its parts: %v", b, err)
			}
			if !bytes.Equal(again, b) {
				t.Fatalf("round trip changed bytes:\n in %x\nout %x", b, again)
			}
		} else if kms.KindOf(err) != kms.InvalidInput {
			t.Fatalf("Decode error kind = %v, want invalid_input: %v", kms.KindOf(err), err)
		}

		enc, err := Encode("vault-transit", b)
		if err != nil {
			if len(b) == 0 || len(b) > MaxSize-headerSize-len("vault-transit") {
				return
			}
			t.Fatalf("Encode of a %d-byte payload failed: %v", len(b), err)
		}
		p, got, err := Decode(enc)
		if err != nil || p != "vault-transit" || !bytes.Equal(got, b) {
			t.Fatalf("Encode/Decode round trip = (%q, %x, %v), want (vault-transit, %x, nil)", p, got, err, b)
		}
	})
}
