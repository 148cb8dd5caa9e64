package source

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{nil, "used"},
		{fmt.Errorf("x: %w", ErrNotFound), "absent"},
		{fmt.Errorf("x: %w", ErrTimeout), "timeout"},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), "timeout"},
		{errors.New("boom"), "error"},
	}
	for _, tt := range tests {
		if got := Classify(tt.err); got != tt.want {
			t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
}

func TestUnreachable(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.ECONNREFUSED, syscall.ENETUNREACH, syscall.EHOSTUNREACH} {
		err := &net.OpError{Op: "dial", Err: fmt.Errorf("connect: %w", errno)}
		if !Unreachable(err) {
			t.Errorf("Unreachable(%v) = false", err)
		}
	}
	if Unreachable(syscall.ECONNRESET) {
		t.Errorf("Unreachable(ECONNRESET) = true: a reset is retried")
	}
}
