package keyid

import (
	"strings"
	"testing"
)

func TestFromTransitDiffersForEveryComponent(t *testing.T) {
	base := FromTransit("https://vault.example:8200", "", "transit", "kubernetes", 1)
	variants := map[string]string{
		"address":   FromTransit("https://vault2.example:8200", "", "transit", "kubernetes", 1),
		"port":      FromTransit("https://vault.example:8201", "", "transit", "kubernetes", 1),
		"namespace": FromTransit("https://vault.example:8200", "team-a", "transit", "kubernetes", 1),
		"mount":     FromTransit("https://vault.example:8200", "", "transit2", "kubernetes", 1),
		"key":       FromTransit("https://vault.example:8200", "", "transit", "kubernetes2", 1),
		"version":   FromTransit("https://vault.example:8200", "", "transit", "kubernetes", 2),
		// The separator must not let components slide into each other.
		"boundary": FromTransit("https://vault.example:8200", "", "transit|kubernetes", "", 1),
	}
	seen := map[string]string{base: "base"}
	for name, id := range variants {
		if other, dup := seen[id]; dup {
			t.Errorf("%s variant collides with %s: %s", name, other, id)
		}
		seen[id] = name
	}
}

func TestFromTransitIgnoresSpellingOfTheSameKey(t *testing.T) {
	want := FromTransit("https://vault.example:8200", "team-a", "transit", "k", 3)
	for _, got := range []string{
		FromTransit("HTTPS://Vault.Example:8200/", "team-a", "transit", "k", 3),
		FromTransit("https://vault.example:8200", "/team-a/", "/transit/", "k", 3),
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

func TestFromTransitShapeAndSize(t *testing.T) {
	id := FromTransit("https://"+strings.Repeat("a", 2000)+":8200", strings.Repeat("n", 2000), "transit", "k", 2147483647)
	if len(id) > 1024 {
		t.Fatalf("key_id is %d bytes, the apiserver allows 1024", len(id))
	}
	if !strings.HasPrefix(id, "transit-") || !strings.HasSuffix(id, "-v2147483647") || len(id) != len("transit-")+12+len("-v2147483647") {
		t.Fatalf("unexpected key_id shape %q", id)
	}
}

func TestTransitVersionRoundTrips(t *testing.T) {
	for _, v := range []int{1, 2, 10, 999999} {
		got, err := TransitVersion(FromTransit("http://127.0.0.1:8200", "", "transit", "k", v))
		if err != nil || got != v {
			t.Errorf("version %d: got %d, %v", v, got, err)
		}
	}
}

func TestTransitVersionRejectsMalformedIDs(t *testing.T) {
	for _, id := range []string{
		"",
		"aws-3f9a1c2b7d4e-v1",
		"transit-3f9a1c2b7d4e",
		"transit-3f9a1c2b7d4e-v",
		"transit-3f9a1c2b7d4e-v0",
		"transit-3f9a1c2b7d4e-v-1",
		"transit-3f9a1c2b7d4e-v01",
		"transit-3f9a1c2b7d4e-vx",
		"transit-3F9A1C2B7D4E-v1",
		"transit-3f9a1c2b7d-v1",
		"transit-3f9a1c2b7d4e00-v1",
		"transit-3f9a1c2b7d4g-v1",
		"transit-3f9a1c2b7d4e-v1-v2",
	} {
		if v, err := TransitVersion(id); err == nil {
			t.Errorf("TransitVersion(%q) = %d, want an error", id, v)
		}
	}
}
