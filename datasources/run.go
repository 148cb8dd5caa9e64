package datasources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/berthos/berth/datasources/source"
)

// Outcomes of one source in a Decision.
const (
	Used      = "used"      // its answer is the result
	Absent    = "absent"    // it said it is not here
	Failed    = "error"     // it failed
	TimedOut  = "timeout"   // its deadline or the budget ran out first
	Outranked = "outranked" // a higher-priority source answered
	Skipped   = "skipped"   // not plausible on this platform, not started
)

// Duration is a time.Duration that reads and writes JSON as "1.5s".
type Duration time.Duration

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// Record is one source's part in a run.
type Record struct {
	Name      string    `json:"name"`
	Needs     string    `json:"needs"`
	Plausible bool      `json:"plausible"`
	Why       string    `json:"why"`
	Start     time.Time `json:"start,omitzero"`
	End       time.Time `json:"end,omitzero"`
	Took      Duration  `json:"took,omitzero"`
	Outcome   string    `json:"outcome"`
	Error     string    `json:"error,omitempty"`
}

// Decision is the record of one run: what the platform looked like, each
// source's outcome, and which one was used. It is saved as JSON and
// printed by `ros datasource explain`.
type Decision struct {
	Start    time.Time `json:"start"`
	End      time.Time `json:"end"`
	Budget   Duration  `json:"budget"`
	Took     Duration  `json:"took"`
	List     []string  `json:"list"`
	Platform Platform  `json:"platform"`
	Sources  []Record  `json:"sources"`
	// Chosen names the source used; empty when none answered, in which
	// case the boot keeps the user-data saved by an earlier boot.
	Chosen string `json:"chosen,omitempty"`
	// BudgetExhausted is true when the budget ran out before a decision.
	BudgetExhausted bool `json:"budget_exhausted,omitempty"`
	// InstanceID is the chosen source's; PreviousInstanceID the one saved
	// before (set by Save), so a new instance on an old disk shows.
	InstanceID         string `json:"instance_id,omitempty"`
	PreviousInstanceID string `json:"previous_instance_id,omitempty"`
	// Result is the chosen answer; it holds user-data, so it is not part
	// of the saved record.
	Result *source.Result `json:"-"`
}

// Run builds the sources list names (`type[:argument]`, `*`), identifies
// the platform, and runs the plausible sources concurrently. The first
// source in list order that answers wins; a lower one's answer is used
// only once every higher one is absent, failed or out of time. Run
// returns within the budget (plus a short grace for cancelled sources);
// its error is for a list it cannot build, never for an absent source.
func Run(ctx context.Context, list []string, opts ...Option) (*Decision, error) {
	c := newConfig(opts)
	start := c.now()
	// Identification counts against the budget too.
	ctx, cancel := context.WithTimeout(ctx, c.budget)
	defer cancel()
	var p Platform
	if c.platform != nil {
		p = *c.platform
	} else {
		p = identify(ctx, c.root)
	}
	srcs := c.sources
	names := make([]string, 0, len(srcs))
	if srcs == nil {
		list = Expand(list, p)
		var err error
		if srcs, err = c.build(list); err != nil {
			return nil, err
		}
	}
	for _, s := range srcs {
		names = append(names, s.Name())
	}
	d := &Decision{Start: start, Budget: Duration(c.budget), List: names, Platform: p}
	run(ctx, c, d, srcs)
	d.End = c.now()
	d.Took = Duration(d.End.Sub(d.Start))
	return d, nil
}

type answer struct {
	i   int
	res *source.Result
	err error
	end time.Time
}

func run(parent context.Context, c *config, d *Decision, srcs []source.Datasource) {
	ctx, cancel := context.WithTimeout(parent, c.budget)
	defer cancel()
	d.Sources = make([]Record, len(srcs))
	results := make([]*source.Result, len(srcs))
	finished := make([]bool, len(srcs))
	ch := make(chan answer, len(srcs))
	pending := 0
	for i, s := range srcs {
		r := &d.Sources[i]
		r.Name, r.Needs = s.Name(), s.Needs().String()
		r.Plausible, r.Why = d.Platform.plausible(kindOf(s.Name()), len(srcs) == 1)
		if !r.Plausible {
			r.Outcome = Skipped
			finished[i] = true
			continue
		}
		timeout := c.netTimeout
		if s.Needs() == source.Local {
			timeout = c.localTimeout
		}
		r.Start = c.now()
		pending++
		go func() {
			sctx, scancel := context.WithTimeout(ctx, timeout)
			defer scancel()
			res, err := s.Fetch(sctx)
			if err == nil && res == nil {
				err = fmt.Errorf("%s: no result and no error", s.Name())
			}
			if err != nil && sctx.Err() != nil && !errors.Is(err, source.ErrNotFound) && !errors.Is(err, source.ErrTimeout) {
				err = fmt.Errorf("%w: %w", source.ErrTimeout, err)
			}
			if err != nil && errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
				err = fmt.Errorf("own deadline of %s: %w", timeout, err)
			}
			ch <- answer{i: i, res: res, err: err, end: c.now()}
		}()
	}
	record := func(a answer) {
		pending--
		finished[a.i] = true
		r := &d.Sources[a.i]
		r.End, r.Took = a.end, Duration(a.end.Sub(r.Start))
		if a.err != nil {
			r.Outcome, r.Error = source.Classify(a.err), a.err.Error()
			if r.Outcome == TimedOut && errors.Is(ctx.Err(), context.DeadlineExceeded) {
				r.Error = fmt.Sprintf("budget of %s ran out: %s", c.budget, r.Error)
			}
			return
		}
		results[a.i] = a.res
	}
	// decide returns the winner, -1 to keep waiting, -2 when none can win.
	decide := func() int {
		for i := range srcs {
			switch {
			case !finished[i]:
				return -1
			case results[i] != nil:
				return i
			}
		}
		return -2
	}
	chosen := decide()
	for chosen == -1 {
		select {
		case a := <-ch:
			record(a)
			chosen = decide()
		case <-ctx.Done():
			d.BudgetExhausted = errors.Is(ctx.Err(), context.DeadlineExceeded)
			chosen = -2
		}
	}
	// Stop the rest, and give them a moment to say so.
	cancel()
	wait := time.NewTimer(grace)
	defer wait.Stop()
	for pending > 0 {
		select {
		case a := <-ch:
			if chosen >= 0 && a.err != nil {
				// Cancelled because a higher source won: not its failure.
				pending--
				finished[a.i] = true
				r := &d.Sources[a.i]
				r.End, r.Took = a.end, Duration(a.end.Sub(r.Start))
				r.Outcome, r.Error = Outranked, "stopped: "+d.Sources[chosen].Name+" answered first in list order"
				continue
			}
			record(a)
			continue
		case <-wait.C:
		}
		break
	}
	end := c.now()
	for i := range srcs {
		r := &d.Sources[i]
		if finished[i] {
			continue
		}
		r.End, r.Took = end, Duration(end.Sub(r.Start))
		if chosen >= 0 {
			r.Outcome, r.Error = Outranked, "stopped: "+d.Sources[chosen].Name+" answered first in list order"
		} else {
			r.Outcome, r.Error = TimedOut, fmt.Sprintf("budget of %s ran out; it did not stop within %s of being cancelled", c.budget, grace)
		}
	}
	if chosen == -2 {
		// Budget out: unfinished higher sources are timeouts now, so the
		// first answer in list order wins.
		for i := range srcs {
			if results[i] != nil {
				chosen = i
				break
			}
		}
	}
	for i := range srcs {
		if results[i] == nil {
			continue
		}
		if i == chosen {
			d.Sources[i].Outcome = Used
		} else {
			d.Sources[i].Outcome = Outranked
			d.Sources[i].Error = d.Sources[chosen].Name + " is higher in the list"
		}
	}
	if chosen >= 0 {
		res := results[chosen]
		if res.Meta.Network == nil {
			res.Meta.Network = res.Network
		} else if res.Network == nil {
			res.Network = res.Meta.Network
		}
		d.Chosen, d.Result, d.InstanceID = srcs[chosen].Name(), res, res.Meta.InstanceID
	}
}

// Explain renders a decision for people: one line per source.
func (d *Decision) Explain() string {
	var b strings.Builder
	fmt.Fprintf(&b, "run at %s took %s of a %s budget\n", d.Start.Format(time.RFC3339), time.Duration(d.Took).Round(time.Millisecond), time.Duration(d.Budget))
	pl := "not identified"
	if d.Platform.Cloud != "" {
		pl = d.Platform.Cloud + " (" + d.Platform.CloudWhy + ")"
	}
	fmt.Fprintf(&b, "platform: %s\n", pl)
	if d.Platform.ScanError != "" {
		fmt.Fprintf(&b, "devices: %s\n", d.Platform.ScanError)
	}
	for _, r := range d.Sources {
		fmt.Fprintf(&b, "  %-24s %-9s", r.Name, r.Outcome)
		if r.Took > 0 {
			fmt.Fprintf(&b, " after %s", time.Duration(r.Took).Round(time.Millisecond))
		}
		fmt.Fprintf(&b, "; %s", r.Why)
		if r.Error != "" {
			fmt.Fprintf(&b, "; %s", r.Error)
		}
		b.WriteString("\n")
	}
	switch {
	case d.Chosen != "":
		fmt.Fprintf(&b, "used: %s", d.Chosen)
		if d.InstanceID != "" {
			fmt.Fprintf(&b, " (instance %s", d.InstanceID)
			if d.PreviousInstanceID != "" && d.PreviousInstanceID != d.InstanceID {
				fmt.Fprintf(&b, ", new: the disk was last booted as %s", d.PreviousInstanceID)
			}
			b.WriteString(")")
		}
		b.WriteString("\n")
	case d.BudgetExhausted:
		b.WriteString("used: none (budget ran out): the boot keeps the user-data saved before\n")
	default:
		b.WriteString("used: none: the boot keeps the user-data saved before\n")
	}
	return b.String()
}
