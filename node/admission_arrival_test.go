package node

import (
	"testing"
	"time"
)

func TestRetryLedgerCountsARetryOnce(t *testing.T) {
	t0 := time.Unix(1000, 0)
	sec := func(i int) time.Time { return t0.Add(time.Duration(i) * time.Second) }
	type interval struct {
		arrived, refused int64
		retryAfter       time.Duration
		want             int64
	}
	for _, tc := range []struct {
		name string
		ivs  []interval // one-second intervals, the first ending at t0+1s
	}{
		{
			name: "without refusals every arrival is demand",
			ivs:  []interval{{arrived: 3000, want: 3000}, {arrived: 2500, want: 2500}},
		},
		{
			name: "refused records retried one Retry-After later are not counted again",
			ivs: []interval{
				{arrived: 7000, refused: 3000, retryAfter: time.Second, want: 10000},
				// 10,000 new records and last second's 3,000 again: 13,000
				// attempts, 10,000 offered.
				{arrived: 7000, refused: 6000, retryAfter: time.Second, want: 10000},
				// 10,000 new and the 6,000 refused last second again.
				{arrived: 7000, refused: 9000, retryAfter: time.Second, want: 10000},
			},
		},
		{
			name: "a retry admitted at its return is not new demand either",
			ivs: []interval{
				{arrived: 0, refused: 4000, retryAfter: time.Second, want: 4000},
				{arrived: 5000, want: 1000},
			},
		},
		{
			name: "returns not yet due are not taken off",
			ivs: []interval{
				{arrived: 7000, refused: 3000, retryAfter: 3 * time.Second, want: 10000},
				{arrived: 7000, refused: 3000, retryAfter: 3 * time.Second, want: 10000},
				{arrived: 7000, refused: 3000, retryAfter: 3 * time.Second, want: 10000},
				{arrived: 7000, refused: 3000, retryAfter: 3 * time.Second, want: 7000},
			},
		},
		{
			name: "returns that never came are forgotten, not taken off later arrivals",
			ivs: []interval{
				{arrived: 100, refused: 3000, retryAfter: time.Second, want: 3100},
				{arrived: 0, want: 0},
				{arrived: 5000, want: 5000},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l retryLedger
			for i, iv := range tc.ivs {
				if got := l.offered(sec(i), sec(i+1), iv.arrived, iv.refused, iv.retryAfter); got != iv.want {
					t.Errorf("interval %d: offered %d, want %d", i+1, got, iv.want)
				}
			}
		})
	}
}

func TestRetryLedgerStaysBounded(t *testing.T) {
	var l retryLedger
	t0 := time.Unix(1000, 0)
	for i := range 10 * retryLedgerMax {
		l.offered(t0, t0.Add(time.Duration(i)*time.Millisecond), 0, 10, time.Hour)
	}
	if len(l.due) > retryLedgerMax {
		t.Errorf("%d returns booked, want at most %d", len(l.due), retryLedgerMax)
	}
}

func TestObservedArrivalCountsRetriesOnce(t *testing.T) {
	n := startNode(t, Config{Sink: newMemSink(), ControlInterval: time.Hour})
	avg := 256.0
	t0 := time.Now()
	// Nothing measured yet: Retry-After is 1 s.
	n.win.addArrived(700)
	n.win.addRejected(300)
	if got := n.observe(t0, time.Second, &avg).ArrivalRate; got != 1000 {
		t.Fatalf("first interval: arrival %v/s, want 1000", got)
	}
	// 1,000 new records and the 300 refused a second ago again.
	n.win.addArrived(800)
	n.win.addRejected(500)
	obs := n.observe(t0.Add(time.Second), time.Second, &avg)
	if obs.ArrivalRate != 1000 {
		t.Fatalf("second interval: arrival %v/s, want 1000 (1,300 attempts less the 300 retried)", obs.ArrivalRate)
	}
	if obs.Rejected != 500 {
		t.Fatalf("second interval: %d refused, want 500 (every refusal is still counted there)", obs.Rejected)
	}
}
