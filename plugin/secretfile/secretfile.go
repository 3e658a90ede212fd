// Package secretfile reads one credential (a token, role_id, secret_id) from a
// file, so that secrets never travel on the command line (field case 10) and a
// stray newline or quote in the file gives a clear error instead of a baffling
// Vault answer (field case 06).
package secretfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Read returns the file's content with surrounding whitespace (spaces, tabs,
// CR, LF) trimmed. Editors and `echo` add a trailing newline, so trimming is
// what operators expect. An empty file, or a value wrapped in quotes (a
// YAML/shell habit that Vault would take literally), is an error naming the
// file. Errors never include the content.
func Read(path string) (string, error) {
	b, err := Bytes(path)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(b))
	if v == "" {
		return "", fmt.Errorf("credential file %s is empty: write the credential into it (a trailing newline is fine)", path)
	}
	if isQuoted(v) {
		return "", fmt.Errorf("credential file %s holds a quoted value: remove the surrounding quotes, the file must contain only the raw credential", path)
	}
	return v, nil
}

// Bytes returns a credential file's raw content, for formats that Read's
// trimming does not fit (a PEM key). Its errors name the file and the fix
// for the usual mistakes: a wrong path, a directory, missing permissions.
func Bytes(path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("credential file path is empty: set it to the file that holds the credential")
	}
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		return b, nil
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("credential file %s does not exist: create it, or correct the path", path)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("credential file %s is not readable by this process (uid %d): grant it read access, e.g. make the plugin's user own the file", path, os.Getuid())
	default:
		if info, statErr := os.Stat(path); statErr == nil && info.IsDir() {
			return nil, fmt.Errorf("credential file %s is a directory: point the setting at the file inside it", path)
		}
		return nil, fmt.Errorf("read credential file %s: %w", path, err)
	}
}

// isQuoted reports a quote at either end; v is non-empty.
func isQuoted(v string) bool {
	first, last := v[0], v[len(v)-1]
	return first == '"' || first == '\'' || last == '"' || last == '\''
}
