// Package progress prints what the appliance is doing for a person watching
// a terminal: one line per step ("▸ start etcd … ✓ 1.2s"), an elapsed-time
// spinner on long steps when the output is a terminal, and details only in
// verbose mode (mage -v).
package progress

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// Printer writes steps to one writer. It is safe for concurrent use.
type Printer struct {
	w       io.Writer
	verbose bool
	tty     bool
	mu      sync.Mutex
}

// New returns a printer on w. Spinner updates are only drawn when w is a
// terminal, so logs and CI output stay one line per step.
func New(w io.Writer, verbose bool) *Printer {
	return &Printer{w: w, verbose: verbose, tty: isTerminal(w)}
}

// Default prints to stdout; verbose follows mage's -v (MAGEFILE_VERBOSE).
func Default() *Printer {
	v := os.Getenv("MAGEFILE_VERBOSE")
	return New(os.Stdout, v == "1" || v == "true")
}

// Discard prints nothing; tests that do not watch progress use it.
func Discard() *Printer { return New(io.Discard, false) }

// Verbose reports whether details are printed.
func (p *Printer) Verbose() bool { return p.verbose }

// Step runs fn as one named step and prints its outcome and duration. The
// error is returned unchanged so callers wrap it with their own context.
func (p *Printer) Step(name string, fn func() error) error {
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	if p.tty {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.spin(name, start, done)
		}()
	} else {
		p.printf("▸ %s …\n", name)
	}
	err := fn()
	close(done)
	wg.Wait()
	elapsed := time.Since(start)
	mark := "✓"
	if err != nil {
		mark = "✗"
	}
	if p.tty {
		p.printf("\r\033[K▸ %s %s %s\n", name, mark, round(elapsed))
	} else {
		p.printf("  %s %s %s\n", mark, name, round(elapsed))
	}
	return err
}

func (p *Printer) spin(name string, start time.Time, done <-chan struct{}) {
	frames := []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}
	t := time.NewTicker(120 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		p.printf("\r\033[K▸ %s %s %s", name, frames[i%len(frames)], round(time.Since(start)))
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// Say prints a line of narration.
func (p *Printer) Say(format string, args ...any) {
	p.printf(format+"\n", args...)
}

// Block prints a multi-line block indented under the current step, e.g. a
// hexdump or a kubectl view.
func (p *Printer) Block(text string) {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	p.printf("%s", b.String())
}

// Detail prints only in verbose mode.
func (p *Printer) Detail(format string, args ...any) {
	if p.verbose {
		p.printf("    "+format+"\n", args...)
	}
}

func (p *Printer) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

func round(d time.Duration) string {
	if d < 10*time.Second {
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return d.Round(time.Second).String()
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil {
		return false
	}
	return fi.Mode()&os.ModeCharDevice != 0 && os.Getenv("TERM") != "dumb" && os.Getenv("CI") == ""
}

// Tail is the last n lines of a command's output or a log, for quoting in
// a failure message: the cause is usually at the end.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
