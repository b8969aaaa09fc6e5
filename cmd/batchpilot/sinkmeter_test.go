package main

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/batchpilot/batchpilot/node/sink"
)

// answerSink answers each write with the next error of its list (nil: ok).
type answerSink struct {
	answers []error
}

func (s *answerSink) Write(context.Context, *sink.Batch) error {
	err := s.answers[0]
	s.answers = s.answers[1:]
	return err
}
func (s *answerSink) Ready(context.Context) error { return nil }
func (s *answerSink) Close() error                { return nil }

func TestSinkMeterCountsHowTheDownstreamAnswered(t *testing.T) {
	throttled := fmt.Errorf("status 429: %w", sink.ErrBackpressure)
	tooLarge := fmt.Errorf("status 413: %w", sink.ErrBatchTooLarge)
	for _, tc := range []struct {
		name                              string
		answers                           []error
		writes, pushback, tooLarge, fails float64 // per second over 2 s
	}{
		{"writes that succeed count as writes only", []error{nil, nil}, 1, 0, 0, 0},
		{"429 and 503 count as pushback and as errors", []error{throttled, nil, throttled, nil}, 2, 1, 0, 1},
		{"413 counts as too large, not as pushback", []error{tooLarge, nil}, 1, 0, 0.5, 0.5},
		{"other failures count as errors only", []error{errors.New("connection refused"), nil}, 1, 0, 0, 0.5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inner := &answerSink{answers: tc.answers}
			m := newSinkMeter(inner)
			start := m.last
			for range tc.answers {
				_ = m.Write(context.Background(), &sink.Batch{Bytes: 1000})
			}
			d := m.downstream(start.Add(2*time.Second), 123)
			if d.WritesPS != tc.writes || d.PushbackPS != tc.pushback || d.TooLargePS != tc.tooLarge || d.ErrorsPS != tc.fails ||
				d.GoodputRPS != 123 || d.IntervalMS != 2000 || d.BytesPS != 500*float64(len(tc.answers)) || d.InFlightBytes < 0 {
				t.Fatalf("downstream %+v; want writes %v, pushback %v, too large %v, errors %v per second", d, tc.writes, tc.pushback, tc.tooLarge, tc.fails)
			}
			if next := m.downstream(start.Add(4*time.Second), 0); next.WritesPS != 0 || next.BytesPS != 0 || next.InFlightBytes != 0 || next.IntervalMS != 2000 {
				t.Fatalf("the next interval %+v still counts the last one's writes", next)
			}
		})
	}
}
