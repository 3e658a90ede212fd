package vaultdev

import (
	"fmt"
	"syscall"
)

// Freeze stops the Vault process with SIGSTOP: its port still accepts TCP
// connections, but nothing answers, which is how a hung or partitioned Vault
// looks to a client. Unlike Stop it keeps the in-memory keys, so Thaw brings
// the same Vault back and old ciphertexts stay decryptable.
func (s *Server) Freeze() error {
	if err := syscall.Kill(s.cmd.Process.Pid, syscall.SIGSTOP); err != nil {
		return fmt.Errorf("freeze dev Vault (pid %d): %w", s.cmd.Process.Pid, err)
	}
	return nil
}

// Thaw resumes a frozen Vault with SIGCONT.
func (s *Server) Thaw() error {
	if err := syscall.Kill(s.cmd.Process.Pid, syscall.SIGCONT); err != nil {
		return fmt.Errorf("thaw dev Vault (pid %d): %w", s.cmd.Process.Pid, err)
	}
	return nil
}
