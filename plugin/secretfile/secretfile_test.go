package secretfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFieldCase06CredentialFilesAreTrimmedOrRejectedByName(t *testing.T) {
	const secret = "s.Fh3kZ9q"
	cases := []struct {
		name    string
		content string
		want    string
		wantErr string
	}{
		{name: "plain", content: secret, want: secret},
		{name: "trailing newline", content: secret + "\n", want: secret},
		{name: "spaces around", content: "  " + secret + "  ", want: secret},
		{name: "CRLF", content: secret + "\r\n", want: secret},
		{name: "tabs and blank lines", content: "\n\t" + secret + "\t\n\n", want: secret},
		{name: "double quotes", content: `"` + secret + `"` + "\n", wantErr: "quoted value"},
		{name: "single quotes", content: "'" + secret + "'", wantErr: "quoted value"},
		{name: "leading quote only", content: `"` + secret, wantErr: "quoted value"},
		{name: "empty", content: "", wantErr: "is empty"},
		{name: "whitespace only", content: " \r\n\t", wantErr: "is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "secret-id")
			if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			got, err := Read(path)
			if tc.wantErr != "" {
				if err == nil {
					t.Fatalf("Read succeeded, want error containing %q", tc.wantErr)
				}
				if !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), path) {
					t.Fatalf("error %q must contain %q and name the file %s", err, tc.wantErr, path)
				}
				if strings.Contains(err.Error(), secret) {
					t.Fatalf("error %q leaks the credential", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if got != tc.want {
				t.Fatalf("Read = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestUnreadableFilesAreNamedWithTheFix(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope"), "does not exist: create it, or correct the path"},
		{"directory", dir, "is a directory: point the setting at the file inside it"},
		{"empty path", "", "credential file path is empty"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Read(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Read(%q) error = %v, want it to name the file and say %q", tc.path, err, tc.want)
			}
		})
	}
}
