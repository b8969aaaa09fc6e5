package tuner

import "time"

// epoch is the simulated clock's origin in the controllers' tests.
var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// run is n attempts of one kind, one every `every`, from at.
type run struct {
	n       int
	every   time.Duration
	rtt     time.Duration
	records int
	outcome AttemptOutcome
	full    bool
	flying  int
}

// observe is one control interval of size ending at the last attempt of
// runs, played one after the other from from.
func observe(from time.Time, size int, runs ...run) (Observation, time.Time) {
	obs := Observation{BatchSize: size, Interval: time.Second, SLO: 500 * time.Millisecond, FlushConcurrency: 4}
	t := from
	for _, r := range runs {
		for range r.n {
			t = t.Add(r.every)
			obs.Attempts = append(obs.Attempts, Attempt{End: t, RTT: r.rtt, Records: r.records, Bytes: r.records * 300,
				Outcome: r.outcome, RetryAfter: -1, InFlight: max(1, r.flying), Full: r.full})
			if r.outcome == AttemptOK {
				obs.Batches++
			}
		}
	}
	obs.Now = t
	return obs, t
}
