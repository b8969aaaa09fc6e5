package consensus

import (
	"testing"
	"time"
)

func TestLease(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ttl := 3 * time.Second
	for _, tc := range []struct {
		name      string
		steps     func(l *Lease)
		at        time.Duration
		wantBytes int64
		wantFresh bool
	}{
		{
			name:      "a lease never renewed answers the baseline",
			steps:     func(l *Lease) {},
			at:        0,
			wantBytes: 100,
		},
		{
			name:      "a renewed lease answers its grant within the TTL",
			steps:     func(l *Lease) { l.Renew(t0, 1, 500, ttl, 100) },
			at:        ttl - time.Nanosecond,
			wantBytes: 500, wantFresh: true,
		},
		{
			name:      "a lease not renewed within the TTL falls back to the baseline",
			steps:     func(l *Lease) { l.Renew(t0, 1, 500, ttl, 120) },
			at:        ttl,
			wantBytes: 120,
		},
		{
			name: "each renewal restarts the TTL",
			steps: func(l *Lease) {
				l.Renew(t0, 1, 500, ttl, 100)
				l.Renew(t0.Add(2*time.Second), 2, 600, ttl, 100)
			},
			at:        4 * time.Second,
			wantBytes: 600, wantFresh: true,
		},
		{
			name: "a grant from an older epoch is ignored",
			steps: func(l *Lease) {
				l.Renew(t0, 5, 500, ttl, 100)
				l.Renew(t0.Add(time.Second), 4, 900, ttl, 100)
			},
			at:        ttl + 500*time.Millisecond,
			wantBytes: 100,
		},
		{
			name: "a cut lowers the grant but does not extend the lease",
			steps: func(l *Lease) {
				l.Renew(t0, 1, 500, ttl, 100)
				l.Cap(300, 100)
			},
			at:        ttl - time.Millisecond,
			wantBytes: 300, wantFresh: true,
		},
		{
			name: "a cut lease still goes stale on time",
			steps: func(l *Lease) {
				l.Renew(t0, 1, 500, ttl, 100)
				l.Cap(300, 100)
			},
			at:        ttl,
			wantBytes: 100,
		},
		{
			name: "the baseline follows the latest allocation's floor",
			steps: func(l *Lease) {
				l.Renew(t0, 1, 500, ttl, 100)
				l.SetBaseline(80)
			},
			at:        time.Hour,
			wantBytes: 80,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := NewLease(100)
			tc.steps(l)
			b, fresh := l.Grant(t0.Add(tc.at))
			if b != tc.wantBytes || fresh != tc.wantFresh {
				t.Fatalf("Grant = %d, %v; want %d, %v", b, fresh, tc.wantBytes, tc.wantFresh)
			}
		})
	}
}

func TestLeaseInfo(t *testing.T) {
	l := NewLease(1)
	if info := l.Info(time.Now()); info.AgeMS != -1 || info.Fresh || info.GrantBytes != 1 {
		t.Fatalf("Info of a new lease = %+v", info)
	}
	now := time.Now()
	l.Renew(now, 1, 10, time.Minute, 1)
	if _, fresh := l.Grant(now.Add(time.Second)); !fresh {
		t.Fatal("stale one second after renewal")
	}
	info := l.Info(now.Add(2 * time.Second))
	if info.AgeMS != 2000 || !info.Fresh || info.GrantBytes != 10 || info.Epoch != 1 {
		t.Fatalf("Info = %+v", info)
	}
}
