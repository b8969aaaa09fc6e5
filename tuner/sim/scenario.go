package sim

import (
	"fmt"
	"time"
)

// Shifting is the multi-phase scenario the controllers are compared on. Each
// phase lasts phase (60s in the full run). The phases, in order, with the
// static sizes that keep up with each when it is run alone (from a sweep of
// DefaultSweep; see TestCompareOnTheShiftingScenario's log):
//
//   - light: 300 records/s to a cheap sink: every size meets the SLO; small
//     batches give the lowest latency.
//   - saturation: 50 000 records/s to a sink whose cost is mostly per write
//     (an 8 ms fsync, 5 µs a record): below about 150 records a batch the
//     node cannot keep up and the queue grows without bound.
//   - knee: 30 000 records/s to a slow downstream (40 ms a request, 50 µs a
//     record) whose cost climbs steeply above 1000 records a request: only
//     sizes from about 500 to 1500 keep up.
//   - heavy: 5 000 records/s of 16 KB records (600 µs each): from about 50
//     to 500; larger batches take too long to write.
//   - burst: 4 000 records/s with 3 s bursts at 8× every 15 s to a cheap
//     sink: 50 and up.
//   - brownout: 6 000 records/s to a downstream that admits 8 000 records/s
//     through a 1000-record token bucket and answers 429 otherwise: 50 to
//     1000; a batch above 1000 never gets through.
//
// The ranges overlap at about 500, so one static size happens to suit every
// phase; the comparison reports it as the best static size in hindsight.
func Shifting(seed uint64, phase time.Duration) Config {
	if phase <= 0 {
		phase = time.Minute
	}
	return Config{
		Name: "shifting",
		Seed: seed,
		Phases: []Phase{
			{Name: "light", Duration: phase, Arrival: 300,
				PerBatch: 5 * time.Millisecond, PerRecord: 20 * time.Microsecond},
			{Name: "saturation", Duration: phase, Arrival: 50000,
				PerBatch: 8 * time.Millisecond, PerRecord: 5 * time.Microsecond},
			{Name: "knee", Duration: phase, Arrival: 30000,
				PerBatch: 40 * time.Millisecond, PerRecord: 50 * time.Microsecond,
				Knee: 1000, KneeFactor: 4},
			{Name: "heavy", Duration: phase, Arrival: 5000, RecordBytes: 16 << 10,
				PerBatch: 10 * time.Millisecond, PerRecord: 600 * time.Microsecond},
			{Name: "burst", Duration: phase, Arrival: 4000,
				BurstEvery: 15 * time.Second, BurstLength: 3 * time.Second, BurstFactor: 8,
				PerBatch: 5 * time.Millisecond, PerRecord: 10 * time.Microsecond},
			{Name: "brownout", Duration: phase, Arrival: 6000,
				PerBatch: 20 * time.Millisecond, PerRecord: 30 * time.Microsecond,
				AdmitRate: 8000, AdmitBurst: 1000},
		},
	}
}

// Scenario returns a named scenario: "shifting" (see Shifting).
func Scenario(name string, seed uint64, phase time.Duration) (Config, error) {
	switch name {
	case "shifting", "":
		return Shifting(seed, phase), nil
	}
	return Config{}, fmt.Errorf("unknown scenario %q (valid: shifting)", name)
}
