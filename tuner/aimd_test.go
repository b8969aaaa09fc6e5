package tuner

import (
	"testing"
	"time"
)

const ms = time.Millisecond

// fullRun is ten full batches of size, 100 ms apart, each written in 50 ms.
func fullRun(size int) run {
	return run{n: 10, every: 100 * ms, rtt: 50 * ms, records: size, outcome: AttemptOK, full: true}
}

func TestAIMDBehavesAsVectorsARCOnTheBatchSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		runs []run
		want int
	}{
		{"grows by a step when batches fill the size and the RTT per record holds, not again for the same batches",
			[]run{fullRun(100)}, 110},
		{"does not grow while batches leave part-full (the limit was not reached)",
			[]run{{n: 10, every: 100 * ms, rtt: 50 * ms, records: 100, outcome: AttemptOK}}, 100},
		{"backs off ×0.9 on back pressure, a 429 retried into a success included, not again for batches cut before",
			[]run{{n: 3, every: 100 * ms, rtt: ms, records: 100, outcome: AttemptBackpressure, full: true}}, 90},
		{"backs off again for back pressure on batches within the new limit",
			[]run{{n: 1, every: 100 * ms, rtt: ms, records: 100, outcome: AttemptBackpressure, full: true},
				{n: 1, every: 100 * ms, rtt: ms, records: 90, outcome: AttemptBackpressure, full: true}}, 81},
		{"backs off on a 413: the downstream refuses the size",
			[]run{{n: 1, every: 100 * ms, rtt: ms, records: 100, outcome: AttemptTooLarge, full: true}}, 90},
		{"backs off when the RTT per record rises above the band",
			[]run{{n: 1, every: 100 * ms, rtt: 80 * ms, records: 100, outcome: AttemptOK, full: true}}, 90},
		{"holds without attempts", nil, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAIMD(AIMDConfig{Initial: 100, Step: 10})
			// Warm-up: part-full batches seed past_rtt near 0.5 ms a
			// record (windows near 50 ms). The RTTs vary and fall, as
			// Vector needs: with a band of zero width, a sample at the mean
			// would already count as above it.
			obs, now := observe(epoch, 100,
				run{n: 1, every: 100 * ms, rtt: 52 * ms, records: 100, outcome: AttemptOK},
				run{n: 1, every: 100 * ms, rtt: 48 * ms, records: 100, outcome: AttemptOK},
				run{n: 1, every: 100 * ms, rtt: 50 * ms, records: 100, outcome: AttemptOK})
			if d := a.Next(obs); d.BatchSize != 100 {
				t.Fatalf("warm-up moved to %d (%s)", d.BatchSize, d.Reason)
			}
			obs, _ = observe(now, 100, tc.runs...)
			if d := a.Next(obs); d.BatchSize != tc.want {
				t.Errorf("size %d (%s), want %d", d.BatchSize, d.Reason, tc.want)
			}
		})
	}
}

func TestAIMDDecidesPerRTTWindow(t *testing.T) {
	// Two windows in one interval, each on its own evidence: full batches
	// of 100 grow the limit to 110; then a 429 on a batch of 100 (within
	// 110) cuts it to 99.
	a := NewAIMD(AIMDConfig{Initial: 100, Step: 10})
	obs, now := observe(epoch, 100,
		run{n: 1, every: 100 * ms, rtt: 52 * ms, records: 100, outcome: AttemptOK},
		run{n: 1, every: 100 * ms, rtt: 48 * ms, records: 100, outcome: AttemptOK})
	a.Next(obs)
	obs, _ = observe(now, 100,
		run{n: 1, every: 100 * ms, rtt: 49 * ms, records: 100, outcome: AttemptOK, full: true},
		run{n: 1, every: 100 * ms, rtt: ms, records: 100, outcome: AttemptBackpressure, full: true})
	if d := a.Next(obs); d.BatchSize != 99 {
		t.Errorf("size %d (%s), want 99 (110, then ×0.9)", d.BatchSize, d.Reason)
	}
}

func TestAIMDDefaultStepIsATenthOfTheInitialSize(t *testing.T) {
	if a := NewAIMD(AIMDConfig{Initial: 400}); a.core.step != 40 {
		t.Errorf("step %v, want 40", a.core.step)
	}
	if a := NewAIMD(AIMDConfig{Initial: 5}); a.core.step != 1 {
		t.Errorf("step %v, want 1", a.core.step)
	}
}

func TestAIMDContinuesFromAnOverride(t *testing.T) {
	a := NewAIMD(AIMDConfig{Initial: 100, Step: 10})
	obs, now := observe(epoch, 100,
		run{n: 1, every: 100 * ms, rtt: 52 * ms, records: 100, outcome: AttemptOK},
		run{n: 1, every: 100 * ms, rtt: 48 * ms, records: 100, outcome: AttemptOK, full: true})
	if d := a.Next(obs); d.BatchSize != 110 {
		t.Fatalf("size %d (%s) after a full window, want 110", d.BatchSize, d.Reason)
	}
	// The breaker held the size at 40: growth resumes from there.
	obs, _ = observe(now, 40, run{n: 1, every: 100 * ms, rtt: 20 * ms, records: 40, outcome: AttemptOK, full: true})
	if d := a.Next(obs); d.BatchSize != 50 {
		t.Errorf("size %d (%s), want 50", d.BatchSize, d.Reason)
	}
}
