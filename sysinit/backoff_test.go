package sysinit

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestBackoff(t *testing.T) {
	tests := []struct {
		name    string
		uptimes []time.Duration
		want    []time.Duration
	}{
		{"crash loop doubles to the cap",
			[]time.Duration{0, 0, 0, 0, 0, 0, 0, 0},
			[]time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 30 * time.Second, 30 * time.Second}},
		{"a long run resets",
			[]time.Duration{0, 0, 0, time.Hour, 0},
			[]time.Duration{0, time.Second, 2 * time.Second, 0, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBackoff(time.Second, 30*time.Second, time.Minute)
			var got []time.Duration
			for _, u := range tt.uptimes {
				got = append(got, b.next(u))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("backoff delays (-want +got):\n%s", diff)
			}
		})
	}
}
