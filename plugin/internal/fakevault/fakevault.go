// Package fakevault is an in-process stand-in for Vault's HTTP API that can
// inject the faults a real Vault will not produce on demand: slow answers,
// 429/5xx, malformed bodies, expired tokens. Tests use it in addition to a
// real dev Vault, never instead of one.
//
// Without injected faults it implements just enough of Vault: logins on any
// auth/<mount>/login (each issues a fresh token), token lookup-self,
// transit/keys/<k> read, sys/capabilities-self (everything allowed), and a
// reversible transit encrypt/decrypt that emits "vault:v<N>:" ciphertexts.
package fakevault

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault replaces Vault's answer on one path.
type Fault struct {
	// Delay holds the answer back (the request context still ends it).
	Delay time.Duration
	// Status, when non-zero, is returned with Body instead of the normal answer.
	Status int
	Body   string
	// Times limits the fault to the first Times requests; 0 means always.
	Times int
}

// Server is a running fake Vault.
type Server struct {
	URL string

	mu          sync.Mutex
	faults      map[string]*Fault
	tokens      map[string]bool
	logins      int
	lastLogin   LoginRequest
	keyVersion  int
	tokenTTL    int
	nextTokenID int
}

// LoginRequest is what the last login carried, for checking request shapes.
type LoginRequest struct {
	Path string
	Body map[string]any
}

// New starts a fake Vault that closes with the test.
func New(t testing.TB) *Server {
	s := &Server{faults: map[string]*Fault{}, tokens: map[string]bool{}, keyVersion: 1, tokenTTL: 3600}
	ts := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(ts.Close)
	s.URL = ts.URL
	return s
}

// Inject sets the fault for an exact request path such as "/v1/transit/decrypt/k".
func (s *Server) Inject(path string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[path] = &f
}

// Clear removes the fault on path.
func (s *Server) Clear(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.faults, path)
}

// Logins counts login requests that issued a token.
func (s *Server) Logins() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins
}

// LastLogin returns the last login request.
func (s *Server) LastLogin() LoginRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastLogin
}

// ExpireTokens makes every token issued so far invalid (answers 403), as
// after a Vault restart or a max TTL the plugin did not see coming.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// AddToken accepts tok as valid, as if an operator had created it.
func (s *Server) AddToken(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens[tok] = true
}

// SetKeyVersion sets the latest version every transit key reports.
func (s *Server) SetKeyVersion(v int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keyVersion = v
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if f := s.takeFault(r.URL.Path); f != nil {
		if f.Delay > 0 {
			select {
			case <-time.After(f.Delay):
			case <-r.Context().Done():
				return
			}
		}
		if f.Status != 0 {
			w.WriteHeader(f.Status)
			_, _ = io.WriteString(w, f.Body)
			return
		}
	}
	var req map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			writeErr(w, http.StatusBadRequest, "failed to parse JSON input: "+err.Error())
			return
		}
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	if strings.HasPrefix(path, "auth/") && strings.HasSuffix(path, "/login") {
		s.login(w, path, req)
		return
	}
	if !s.validToken(r.Header.Get("X-Vault-Token")) {
		writeErr(w, http.StatusForbidden, "permission denied")
		return
	}
	parts := strings.Split(path, "/")
	switch {
	case path == "auth/token/lookup-self":
		writeData(w, map[string]any{"ttl": 0, "renewable": false})
	case path == "sys/capabilities-self":
		caps := map[string]any{}
		paths, _ := req["paths"].([]any)
		for _, p := range paths {
			caps[fmt.Sprint(p)] = []string{"update", "read"}
		}
		writeData(w, caps)
	case len(parts) == 3 && parts[1] == "keys":
		s.mu.Lock()
		v := s.keyVersion
		s.mu.Unlock()
		writeData(w, map[string]any{"latest_version": v, "min_decryption_version": 1, "type": "aes256-gcm96"})
	case len(parts) == 3 && parts[1] == "encrypt":
		pt, _ := req["plaintext"].(string)
		v, _ := req["key_version"].(float64)
		if v == 0 {
			v = 1
		}
		writeData(w, map[string]any{"ciphertext": "vault:v" + strconv.Itoa(int(v)) + ":" + base64.StdEncoding.EncodeToString([]byte(pt)),
			"key_version": int(v)})
	case len(parts) == 3 && parts[1] == "decrypt":
		s.decrypt(w, req)
	default:
		writeErr(w, http.StatusNotFound, "no handler for route "+strconv.Quote(path))
	}
}

func (s *Server) takeFault(path string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	f, ok := s.faults[path]
	if !ok {
		return nil
	}
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			delete(s.faults, path)
		}
	}
	return f
}

func (s *Server) login(w http.ResponseWriter, path string, req map[string]any) {
	s.mu.Lock()
	s.logins++
	s.nextTokenID++
	tok := "fake-token-" + strconv.Itoa(s.nextTokenID)
	s.tokens[tok] = true
	s.lastLogin = LoginRequest{Path: path, Body: req}
	ttl := s.tokenTTL
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"auth": map[string]any{
		"client_token": tok, "lease_duration": ttl, "renewable": false, "policies": []string{"default"},
	}})
}

func (s *Server) validToken(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tokens[tok]
}

// decrypt reverses encrypt, answering like Vault for garbage input.
func (s *Server) decrypt(w http.ResponseWriter, req map[string]any) {
	ct, _ := req["ciphertext"].(string)
	rest, ok := strings.CutPrefix(ct, "vault:v")
	if !ok {
		writeErr(w, http.StatusBadRequest, "invalid ciphertext: no prefix")
		return
	}
	ver, b64, ok := strings.Cut(rest, ":")
	if _, err := strconv.Atoi(ver); !ok || err != nil {
		writeErr(w, http.StatusBadRequest, "invalid ciphertext: wrong number of fields")
		return
	}
	pt, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "invalid ciphertext: could not decode ciphertext")
		return
	}
	if _, err := base64.StdEncoding.DecodeString(string(pt)); err != nil {
		writeErr(w, http.StatusBadRequest, "cipher: message authentication failed")
		return
	}
	writeData(w, map[string]any{"plaintext": string(pt)})
}

func writeData(w http.ResponseWriter, data map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []string{msg}})
}
