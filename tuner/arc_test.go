package tuner

import "testing"

func TestARCStartsAtVectorsDefaults(t *testing.T) {
	a := NewARC(ARCConfig{})
	if conc, bytes := a.InitialFlow(); conc != 1 || bytes != 1_048_576 {
		t.Errorf("initial flow %d batches, %d bytes; want Vector's 1 and the cloudwatch sink's 1 MiB", conc, bytes)
	}
	var fc FlowController = a // the node sets its flow from the start
	if d := fc.Next(Observation{MaxBatchSize: 20000, FlushConcurrency: 4}); d.BatchSize != 10_000 || d.FlushConcurrency != 1 || d.BatchBytes != 1_048_576 {
		t.Errorf("decision %+v, want 10 000 records, 1 at once, 1 MiB", d)
	}
	if d := a.Next(Observation{MaxBatchSize: 5000}); d.BatchSize != 5000 {
		t.Errorf("size %d above the node's cap of 5000", d.BatchSize)
	}
}

func TestARCAdaptsTheFlushConcurrencyAsVectorDoes(t *testing.T) {
	// In flight at the limit, steady RTTs that vary a little.
	calm := func(flying int) []run {
		return []run{
			{n: 1, every: 100 * ms, rtt: 52 * ms, records: 3000, outcome: AttemptOK, flying: flying},
			{n: 1, every: 100 * ms, rtt: 48 * ms, records: 3000, outcome: AttemptOK, flying: flying},
			{n: 1, every: 100 * ms, rtt: 50 * ms, records: 3000, outcome: AttemptOK, flying: flying},
		}
	}
	// The calm interval at a limit of 4 (requests reach it) grows the
	// limit to 5 at its first window; its last request, started at 4, no
	// longer reaches it: the runs below start from 5.
	for _, tc := range []struct {
		name string
		runs []run
		want int
	}{
		{"grows by one when requests in flight reach the limit and the RTT holds",
			[]run{{n: 3, every: 100 * ms, rtt: 50 * ms, records: 3000, outcome: AttemptOK, flying: 5}}, 6},
		{"does not grow while fewer requests than the limit are in flight",
			[]run{{n: 3, every: 100 * ms, rtt: 50 * ms, records: 3000, outcome: AttemptOK, flying: 2}}, 5},
		{"backs off ×0.9, at least by one, on a 429", []run{{n: 1, every: 100 * ms, rtt: ms, records: 3000, outcome: AttemptBackpressure, flying: 2}}, 4},
		{"ignores a 413, as Vector's retry logic does",
			[]run{{n: 1, every: 100 * ms, rtt: ms, records: 3000, outcome: AttemptTooLarge, flying: 2}}, 5},
		{"does not cut again for requests started above the limit it cut to",
			[]run{{n: 3, every: 100 * ms, rtt: ms, records: 3000, outcome: AttemptBackpressure, flying: 5}}, 4},
		{"cuts again for back pressure within the new limit",
			[]run{{n: 1, every: 100 * ms, rtt: ms, records: 3000, outcome: AttemptBackpressure, flying: 5},
				{n: 1, every: 100 * ms, rtt: ms, records: 3000, outcome: AttemptBackpressure, flying: 4}}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewARC(ARCConfig{Initial: 4})
			obs, _ := observe(epoch, 10000, append(calm(4), tc.runs...)...)
			obs.FlushConcurrency = ARCMaxConcurrency
			if d := a.Next(obs); d.FlushConcurrency != tc.want {
				t.Errorf("concurrency %d (%s), want %d", d.FlushConcurrency, d.Reason, tc.want)
			}
		})
	}
	t.Run("stays within the node's flush concurrency", func(t *testing.T) {
		a := NewARC(ARCConfig{Initial: 4})
		obs, _ := observe(epoch, 10000, append(calm(4), calm(4)...)...)
		if d := a.Next(obs); d.FlushConcurrency != 4 {
			t.Errorf("concurrency %d above the node's 4", d.FlushConcurrency)
		}
	})
}
