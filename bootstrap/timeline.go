package bootstrap

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/berthos/berth/internal/atomicfile"
)

// TimelinePath is where PID 1 writes the boot timeline.
const TimelinePath = "/var/log/boot-timeline.json"

// Phase is one step of the boot: when it started (since the kernel
// started) and how long it took.
type Phase struct {
	Name     string        `json:"name"`
	Start    time.Duration `json:"start_ns"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
}

// Timeline is the boot's phases in order, from kernel start to "User
// Docker ready". It is safe for concurrent use.
type Timeline struct {
	mu     sync.Mutex
	Phases []Phase `json:"phases"`
	// now is replaceable in tests.
	now func() time.Duration
}

// NewTimeline returns an empty timeline whose clock is Uptime.
func NewTimeline() *Timeline { return &Timeline{now: Uptime} }

// Begin starts a phase; the returned func ends it with its error.
func (t *Timeline) Begin(name string) func(error) {
	start := t.now()
	return func(err error) {
		p := Phase{Name: name, Start: start, Duration: t.now() - start}
		if err != nil {
			p.Error = err.Error()
		}
		t.mu.Lock()
		t.Phases = append(t.Phases, p)
		t.mu.Unlock()
	}
}

// Mark records an instant event (a phase of zero length) at now.
func (t *Timeline) Mark(name string) {
	now := t.now()
	t.mu.Lock()
	t.Phases = append(t.Phases, Phase{Name: name, Start: now})
	t.mu.Unlock()
}

// Snapshot returns a copy of the phases.
func (t *Timeline) Snapshot() []Phase {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]Phase(nil), t.Phases...)
}

// Save writes the timeline as JSON to path, atomically.
func (t *Timeline) Save(path string) error {
	data, err := json.MarshalIndent(struct {
		Phases []Phase `json:"phases"`
	}{t.Snapshot()}, "", "  ")
	if err != nil {
		return fmt.Errorf("save timeline: %w", err)
	}
	if err := os.MkdirAll(dirOf(path), 0o755); err != nil {
		return fmt.Errorf("save timeline: %w", err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("save timeline: %w", err)
	}
	return nil
}

func dirOf(p string) string {
	if i := strings.LastIndexByte(p, '/'); i > 0 {
		return p[:i]
	}
	return "/"
}

// ReadTimeline reads a timeline written by Save.
func ReadTimeline(path string) ([]Phase, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read timeline: %w", err)
	}
	var v struct {
		Phases []Phase `json:"phases"`
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, fmt.Errorf("read timeline %s: %w", path, err)
	}
	return v.Phases, nil
}

func secs(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

// WriteTable prints the phases as a table: start and end in seconds since
// the kernel started, duration, and the error if any.
func WriteTable(w io.Writer, phases []Phase) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PHASE\tSTART\tEND\tDURATION\tERROR")
	for _, p := range phases {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Name, secs(p.Start), secs(p.Start+p.Duration), secs(p.Duration), p.Error)
	}
	return tw.Flush()
}

// WriteSVG draws the phases as a Gantt chart: one bar per phase on a
// seconds-since-kernel-start axis.
func WriteSVG(w io.Writer, phases []Phase) error {
	const rowH, left, width = 22, 220, 700
	var end time.Duration
	for _, p := range phases {
		if e := p.Start + p.Duration; e > end {
			end = e
		}
	}
	if end <= 0 {
		end = time.Second
	}
	scale := float64(width) / end.Seconds()
	h := rowH*(len(phases)+2) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="monospace" font-size="12">`+"\n", left+width+80, h)
	fmt.Fprintf(&b, `<text x="4" y="14">Berth boot timeline (seconds since kernel start, total %.3f s)</text>`+"\n", end.Seconds())
	for i, p := range phases {
		y := rowH*(i+1) + 8
		x := left + int(p.Start.Seconds()*scale)
		bw := int(p.Duration.Seconds() * scale)
		if bw < 1 {
			bw = 1
		}
		color := "#4a90d9"
		if p.Error != "" {
			color = "#d94a4a"
		}
		fmt.Fprintf(&b, `<text x="4" y="%d">%s</text>`+"\n", y+14, escapeXML(p.Name))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"><title>%s %s s</title></rect>`+"\n", x, y+2, bw, rowH-6, color, escapeXML(p.Name), secs(p.Duration))
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", x+bw+4, y+14, secs(p.Start+p.Duration))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func escapeXML(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
