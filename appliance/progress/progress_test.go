package progress

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestStepPrintsOutcomeAndDuration(t *testing.T) {
	var b bytes.Buffer
	p := New(&b, false)
	if err := p.Step("start etcd", func() error { return nil }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	if err := p.Step("start vault", func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Step returned %v, want the step's own error", err)
	}
	p.Detail("hidden unless verbose")
	out := b.String()
	for _, want := range []string{"▸ start etcd …", "✓ start etcd 0.0s", "✗ start vault"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hidden") {
		t.Error("Detail printed without verbose")
	}
}

func TestTailQuotesTheLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb\n", 5, "a\nb"},
		{"only", 1, "only"},
	} {
		if got := Tail(tc.in, tc.n); got != tc.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
