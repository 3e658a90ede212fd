package server

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// staleDialTimeout bounds the probe of an existing socket. A live server
// accepts in microseconds; a stale file refuses at once.
const staleDialTimeout = time.Second

// Socket is the unix socket the apiserver dials. It remembers the file it
// created so that shutdown removes that file and never a successor's.
type Socket struct {
	*net.UnixListener
	path string
	file os.FileInfo
	// RemovedStale is true when Listen deleted a socket that nobody served
	// on (a killed predecessor's), so the caller can log it.
	RemovedStale bool
}

// Path is the socket's file path.
func (s *Socket) Path() string { return s.path }

// Listen creates the socket at path with the given permissions (field case
// 01). A socket left behind by a killed plugin is removed; a socket some
// process still serves on is never stolen; anything that is not a socket is
// never deleted.
func Listen(path string, mode os.FileMode) (*Socket, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("socket path %q must be absolute", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create socket directory %s: %w", filepath.Dir(path), err)
	}
	removed, err := removeStale(path)
	if err != nil {
		return nil, err
	}
	// Bind in a private directory, set the mode there, then link the socket
	// into place: bound at path directly it would be reachable with the
	// umask's mode until the chmod, and a connection accepted in that
	// window would stay open.
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".")
	if err != nil {
		return nil, fmt.Errorf("create a private directory next to socket %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	bound := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: bound, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on socket %s (bound first as %s; \"invalid argument\" means that is longer than 107 bytes: use a directory of at most 93): %w", path, bound, err)
	}
	// Remove is ours to call, after draining; see Socket.Remove.
	l.SetUnlinkOnClose(false)
	if err := os.Chmod(bound, mode); err != nil {
		l.Close()
		return nil, fmt.Errorf("set mode %04o on socket %s: %w", mode, path, err)
	}
	if err := os.Link(bound, path); err != nil {
		l.Close()
		return nil, fmt.Errorf("put socket %s in place: %w (if it exists, another plugin started at the same moment)", path, err)
	}
	info, err := os.Lstat(path)
	if err != nil {
		l.Close()
		return nil, fmt.Errorf("stat socket %s after creating it: %w", path, err)
	}
	return &Socket{UnixListener: l, path: path, file: info, RemovedStale: removed}, nil
}

// Remove deletes the socket file if it is still the one Listen created.
func (s *Socket) Remove() error {
	info, err := os.Lstat(s.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat socket %s before removing it: %w", s.path, err)
	}
	if !os.SameFile(info, s.file) {
		return nil
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove socket %s: %w", s.path, err)
	}
	return nil
}

// removeStale deletes a socket at path that nobody accepts on and reports
// whether it did.
func removeStale(path string) (bool, error) {
	info, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("inspect existing socket path %s: %w", path, err)
	}
	if info.Mode().Type() != fs.ModeSocket {
		return false, fmt.Errorf("socket path %s exists and is %s, not a socket: refusing to delete it; remove it yourself or choose another socket path", path, describe(info))
	}
	conn, err := net.DialTimeout("unix", path, staleDialTimeout)
	if err == nil {
		conn.Close()
		return false, fmt.Errorf("another process is serving on %s; stop it or choose another socket path", path)
	}
	// Only "connection refused" proves nobody listens. A full backlog
	// (EAGAIN) or a permission error may hide a live server, which must
	// never lose its socket.
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return false, fmt.Errorf("cannot tell whether a process is serving on %s (%v); stop it or remove the socket yourself", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("remove stale socket %s (nobody accepts on it): %w", path, err)
	}
	return true, nil
}

func describe(info os.FileInfo) string {
	switch {
	case info.IsDir():
		return "a directory"
	case info.Mode().IsRegular():
		return "a regular file"
	default:
		return "a " + info.Mode().Type().String() + " file"
	}
}
