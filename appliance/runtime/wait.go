package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrInterrupted marks an operation the person cancelled (Ctrl-C cancels
// mage's context). It must never read as a timeout: nothing was slow.
var ErrInterrupted = errors.New("interrupted")

// WaitEnded is the error for a wait that ended before its condition held.
// parent is the caller's context, before the wait added its own deadline:
// when the caller cancelled it, the wait was interrupted, and the stack is
// left as it is; otherwise the wait ran out of time and timedOut (given how
// long it really waited) names the cause and fix.
func WaitEnded(parent context.Context, what string, started time.Time, timedOut func(waited time.Duration) error) error {
	waited := time.Since(started).Round(100 * time.Millisecond)
	if errors.Is(parent.Err(), context.Canceled) {
		return fmt.Errorf("%w after %s while %s; nothing was stopped or undone: `go tool mage status` shows the stack as it is",
			ErrInterrupted, waited, what)
	}
	return timedOut(waited)
}
