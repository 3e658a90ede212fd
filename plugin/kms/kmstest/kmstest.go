// Package kmstest provides an in-memory kms.Provider whose faults tests can
// script: errors per operation, a changing key_id, and calls that block and
// ignore their context (the worst case a server must survive).
package kmstest

import (
	"bytes"
	"context"
	"encoding/base64"
	"sync"
	"sync/atomic"

	"github.com/trousseau-io/trousseau/plugin/kms"
)

// Provider is a scriptable kms.Provider. Its zero value is not usable; call New.
type Provider struct {
	name string

	mu         sync.Mutex
	keyID      string
	statusErr  error
	encryptErr error
	decryptErr error
	block      chan struct{}

	statusCalls  atomic.Int64
	encryptCalls atomic.Int64
	decryptCalls atomic.Int64
}

// New returns a healthy provider named name with key_id "fake-key-1".
func New(name string) *Provider {
	return &Provider{name: name, keyID: "fake-key-1"}
}

// SetKeyID changes the key that CurrentKeyID reports, as a rotation would.
func (p *Provider) SetKeyID(id string) { p.mu.Lock(); p.keyID = id; p.mu.Unlock() }

// SetStatusErr makes CurrentKeyID return err (alongside the key_id), or
// succeed again when err is nil.
func (p *Provider) SetStatusErr(err error) { p.mu.Lock(); p.statusErr = err; p.mu.Unlock() }

// SetEncryptErr makes Encrypt fail with err, or succeed when err is nil.
func (p *Provider) SetEncryptErr(err error) { p.mu.Lock(); p.encryptErr = err; p.mu.Unlock() }

// SetDecryptErr makes Decrypt fail with err, or succeed when err is nil.
func (p *Provider) SetDecryptErr(err error) { p.mu.Lock(); p.decryptErr = err; p.mu.Unlock() }

// Block makes every later call wait, ignoring its context, until the returned
// function is called.
func (p *Provider) Block() (release func()) {
	ch := make(chan struct{})
	p.mu.Lock()
	p.block = ch
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			if p.block == ch {
				p.block = nil
			}
			p.mu.Unlock()
			close(ch)
		})
	}
}

// StatusCalls counts CurrentKeyID calls.
func (p *Provider) StatusCalls() int64 { return p.statusCalls.Load() }

// EncryptCalls counts Encrypt calls, including ones still blocked.
func (p *Provider) EncryptCalls() int64 { return p.encryptCalls.Load() }

// DecryptCalls counts Decrypt calls, including ones still blocked.
func (p *Provider) DecryptCalls() int64 { return p.decryptCalls.Load() }

// Name implements kms.Provider.
func (p *Provider) Name() string { return p.name }

// CurrentKeyID implements kms.Provider.
func (p *Provider) CurrentKeyID(context.Context) (string, error) {
	p.statusCalls.Add(1)
	p.wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keyID, p.statusErr
}

// Encrypt implements kms.Provider. The ciphertext records keyID so that
// Decrypt can check the key_id the server passes back.
func (p *Provider) Encrypt(_ context.Context, keyID string, plaintext []byte) ([]byte, error) {
	p.encryptCalls.Add(1)
	p.wait()
	p.mu.Lock()
	err := p.encryptErr
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return []byte("fake:" + keyID + ":" + base64.StdEncoding.EncodeToString(scramble(plaintext))), nil
}

// Decrypt implements kms.Provider.
func (p *Provider) Decrypt(_ context.Context, keyID string, ciphertext []byte) ([]byte, error) {
	p.decryptCalls.Add(1)
	p.wait()
	p.mu.Lock()
	err := p.decryptErr
	p.mu.Unlock()
	if err != nil {
		return nil, err
	}
	prefix := []byte("fake:" + keyID + ":")
	if !bytes.HasPrefix(ciphertext, prefix) {
		return nil, kms.Errorf(kms.InvalidInput, "ciphertext was not written with key %s", keyID)
	}
	b, err := base64.StdEncoding.DecodeString(string(ciphertext[len(prefix):]))
	if err != nil {
		return nil, kms.Errorf(kms.InvalidInput, "ciphertext body is not base64: %v", err)
	}
	return scramble(b), nil
}

// Close implements kms.Provider.
func (p *Provider) Close() error { return nil }

func (p *Provider) wait() {
	p.mu.Lock()
	ch := p.block
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// scramble keeps the plaintext (and its base64) out of the ciphertext, so a
// test that greps logs for the plaintext cannot be fooled by a logged
// ciphertext.
func scramble(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		out[i] = c ^ 0x5a
	}
	return out
}

var _ kms.Provider = (*Provider)(nil)
