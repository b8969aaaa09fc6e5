package loadgen

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseScenarioRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name, in, want string
	}{
		{"not JSON", `{`, "unexpected EOF"},
		{"no phases", `{"phases": []}`, "no phases"},
		{"unknown field", `{"phases": [{"rat": 10}]}`, "unknown field"},
		{"unknown pattern", `{"phases": [{"pattern": "square"}]}`, "unknown pattern"},
		{"negative rate", `{"phases": [{"rate": -1}]}`, "out of"},
		{"bad duration", `{"phases": [{"duration": "soon"}]}`, "invalid duration"},
		{"negative duration", `{"phases": [{"duration": -3}]}`, "out of"},
		{"unknown protocol", `{"phases": [{"protocol": "kafka"}]}`, "unknown protocol"},
		{"bad size", `{"phases": [{"record_size": {"dist": "zipf"}}]}`, "unknown dist"},
		{"size not whole", `{"phases": [{"record_size": 1.5}]}`, "whole bytes"},
		{"trailing data", `{"phases": [{}]} {}`, "after the JSON"},
		{"huge batch", `{"phases": [{"batch": 100000000}]}`, "batch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseScenario([]byte(tc.in))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestPlanChecksWhatEachPatternNeeds(t *testing.T) {
	noTrace := func(string) (*Trace, error) { return nil, errors.New("no such trace") }
	for _, tc := range []struct {
		name, in, want string
	}{
		{"ramp without a duration", `{"phases": [{"pattern": "ramp", "rate": 100}]}`, "needs a duration"},
		{"step without a rate", `{"phases": [{"pattern": "step", "duration": "10s"}]}`, "needs a rate"},
		{"replay without a trace", `{"phases": [{"pattern": "replay"}]}`, "needs a trace"},
		{"replay of a missing trace", `{"phases": [{"pattern": "replay", "trace": "x"}]}`, "no such trace"},
		{"closed with a rate", `{"phases": [{"pattern": "closed", "rate": 5}]}`, "takes no rate"},
		{"an unbounded phase before another", `{"phases": [{"rate": 5}, {"rate": 6, "duration": 1}]}`, "only the last"},
		{"big UDP records", `{"phases": [{"rate": 5, "protocol": "udp", "record_size": 70000}]}`, "UDP datagram"},
		{"burst too dense", `{"phases": [{"pattern": "burst", "rate": 5, "burst_every": "1ms", "duration": "720h"}]}`, "too small"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := ParseScenario([]byte(tc.in))
			if err != nil {
				t.Fatal(err)
			}
			_, err = sc.plan(Phase{}, "http", noTrace, "r")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// A phase takes what it leaves out from the scenario's defaults, then the
// flags, then the built-in defaults.
func TestPhaseDefaultsLayer(t *testing.T) {
	sc, err := ParseScenario([]byte(`{"defaults": {"batch": 7, "protocol": "tcp"},
		"phases": [{"rate": 10, "duration": "1s"}, {"rate": 20, "batch": 3, "record_size": 99}]}`))
	if err != nil {
		t.Fatal(err)
	}
	gz := true
	plans, err := sc.plan(Phase{Batch: 50, RecordSize: Size{Mean: 500}, Gzip: &gz, Framing: "newline"}, "http", nil, "r")
	if err != nil {
		t.Fatal(err)
	}
	p0, p1 := plans[0], plans[1]
	if p0.batch != 7 || p1.batch != 3 || p0.proto != "tcp" || !p0.gzip || p0.framing != "newline" {
		t.Errorf("phase 0 batch %d proto %s gzip %v framing %s; phase 1 batch %d", p0.batch, p0.proto, p0.gzip, p0.framing, p1.batch)
	}
	if p0.name != "phase1" || p0.dur != time.Second || p1.dur != 0 {
		t.Errorf("names/durations: %s %v %v", p0.name, p0.dur, p1.dur)
	}
}

func FuzzScenario(f *testing.F) {
	for _, s := range []string{
		`{"phases": [{"rate": 100, "duration": "10s"}]}`,
		`{"name": "all", "seed": 3, "defaults": {"batch": 50, "record_size": {"dist": "normal", "mean": 300, "stddev": 50}},
		  "phases": [
			{"pattern": "ramp", "from": 10, "rate": 1000, "duration": "30s"},
			{"pattern": "step", "levels": [100, 300, 200], "step_every": "5s"},
			{"pattern": "spike", "rate": 5000, "from": 500, "spike_at": "3s", "spike_for": "2s", "duration": 10},
			{"pattern": "sine", "rate": 900, "period": "1m", "duration": "2m", "fields": 12, "protocol": "tcp", "framing": "newline"},
			{"pattern": "burst", "rate": 4000, "burst_every": "5s", "burst_for": "500ms", "duration": "1m", "gzip": true},
			{"pattern": "replay", "trace": "t.log", "speed": 2, "count": 5000},
			{"pattern": "closed", "count": 100}]}`,
	} {
		f.Add([]byte(s))
	}
	tr := &Trace{At: []time.Duration{0, time.Second}, Lines: [][]byte{[]byte(`{"a":1}`), []byte("b")}}
	load := func(string) (*Trace, error) { return tr, nil }
	f.Fuzz(func(t *testing.T, b []byte) {
		sc, err := ParseScenario(b)
		if err != nil {
			return
		}
		plans, err := sc.plan(Phase{}, "http", load, "fz")
		if err != nil {
			return
		}
		for _, p := range plans {
			if p.batch < 1 || p.enc == nil || (p.proto != "http" && p.proto != "tcp" && p.proto != "udp") {
				t.Fatalf("phase %s planned badly: %+v", p.name, p)
			}
			if p.pat == nil {
				continue
			}
			// The schedule's first records are due in order and never before 0.
			var hint time.Duration
			for j := int64(0); j < 50; j++ {
				d, ok := Due(p.pat, j, hint, time.Hour)
				if !ok {
					break
				}
				if d < hint || d < 0 {
					t.Fatalf("phase %s: record %d due at %v after %v", p.name, j, d, hint)
				}
				hint = d
			}
			var pl payload
			p.enc.encode(&pl, 0, 0, 3, time.Unix(0, 0))
			if pl.n != 3 || len(pl.ends) != 3 {
				t.Fatalf("phase %s encoded %d records", p.name, pl.n)
			}
		}
	})
}
