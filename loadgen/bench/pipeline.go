package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shirou/gopsutil/v4/load"
	"github.com/shirou/gopsutil/v4/process"

	"github.com/batchpilot/batchpilot/loadgen"
	"github.com/batchpilot/batchpilot/loadgen/sinksim"
	"github.com/batchpilot/batchpilot/node"
	"github.com/batchpilot/batchpilot/node/sink"
	"github.com/batchpilot/batchpilot/tuner"
)

// pipeline runs one controller over phases of the scenario on a fresh
// pipeline: loadgen → HTTP → node (controller + breaker) → http sink →
// sinksim, all on 127.0.0.1.
type pipeline struct {
	sc       *Scenario
	cpuLimit float64
	progress io.Writer
	every    time.Duration
	tag      string // prefix of progress lines
	// quick shortens the grace time after the schedule (see grace).
	quick bool
	// steps, when set, receives the run's control steps (ControlStep),
	// named runName.
	steps   io.Writer
	runName string
}

// ControlStep is one control step of a bench run, a line of --steps: what the
// controller saw and the decision carried out (after the breaker and the
// clamp), with the breaker's state. It is the shape of the gradient's
// golden decisions (tuner/testdata), so that a run replays against a
// changed controller: go test ./tuner -run TestGradientReplaysBenchSteps
// -steps FILE -v (docs/bench.md).
type ControlStep struct {
	Run     string            `json:"run"`
	Obs     tuner.Observation `json:"obs"`
	Dec     tuner.Decision    `json:"dec"`
	Breaker string            `json:"breaker"`
}

// stepWriter returns the node's Trace hook writing to p.steps, and a
// function that reports the first error writing it; nil when there are no
// steps to write.
func (p *pipeline) stepWriter() (func(tuner.Observation, tuner.Verdict), func() error) {
	if p.steps == nil {
		return nil, func() error { return nil }
	}
	var (
		mu  sync.Mutex
		err error
	)
	enc, run := json.NewEncoder(p.steps), p.runName
	hook := func(obs tuner.Observation, v tuner.Verdict) {
		mu.Lock()
		defer mu.Unlock()
		if err == nil {
			err = enc.Encode(ControlStep{Run: run, Obs: obs, Dec: v.Decision, Breaker: v.Breaker})
		}
	}
	return hook, func() error {
		mu.Lock()
		defer mu.Unlock()
		return err
	}
}

// grace is how long a run waits after its schedule for the last answers:
// a record still unanswered then is far past the SLO (and one answered
// later would not count as good anyway). The full bench waits four SLOs,
// at least 2 s; --quick two, at least 1 s.
func (p *pipeline) grace() time.Duration {
	if p.quick {
		return max(time.Second, 2*p.sc.SLO.D())
	}
	return max(2*time.Second, 4*p.sc.SLO.D())
}

// sampleEvery is how often the node's batch size is read.
const sampleEvery = 100 * time.Millisecond

// run runs spec over phases [from, to) and summarizes it. index makes the
// run's record ids unique.
func (p *pipeline) run(ctx context.Context, spec string, from, to, index int) (Result, error) {
	sc := p.sc
	discard := slog.New(slog.DiscardHandler)
	lsc, err := sc.loadScenario(from, to)
	if err != nil {
		return Result{}, err
	}
	ssc, err := sc.sinkScenario(from, to)
	if err != nil {
		return Result{}, err
	}
	sched, err := newSchedule(lsc)
	if err != nil {
		return Result{}, err
	}
	maxBody := sc.Sink.MaxBody
	if maxBody <= 0 {
		maxBody = 64 << 20
	}
	retryAfter := time.Second
	if sc.Sink.RetryAfter != nil {
		retryAfter = sc.Sink.RetryAfter.D()
	}

	sim, err := sinksim.Start(sinksim.Config{Scenario: ssc, RetryAfter: retryAfter, MaxBody: maxBody, Seed: lsc.Seed})
	if err != nil {
		return Result{}, err
	}
	defer sim.Close()
	httpSink, err := sink.NewHTTP(sink.HTTPConfig{URL: sim.URL() + "/bulk", Logger: discard})
	if err != nil {
		return Result{}, err
	}
	snk := &cutoffSink{Sink: httpSink, process: sc.processCosts(from, to)}
	ctl, err := tuner.New(spec, sc.Node.initial(), sc.Node.maxBatch())
	if err != nil {
		return Result{}, err
	}
	initial := sc.Node.initial()
	if size, ok := staticSize(ctl.Name()); ok {
		initial = size
	}
	// A controller of the flush concurrency (arc) runs up to its own
	// ceiling, Vector's 200, rather than the node's fixed 4: that is the
	// room Vector's adaptive concurrency has. It starts at its own initial
	// limit (1), so the node's ceiling is only room.
	flush := sc.Node.FlushConcurrency
	if _, ok := ctl.(tuner.FlowController); ok {
		flush = max(flush, tuner.ARCMaxConcurrency)
	}
	sampler, err := tuner.NewSampler(ctx)
	if err != nil {
		return Result{}, err
	}
	onStep, stepsErr := p.stepWriter()
	cpuBefore := processCPU()
	loadBefore := hostLoad()
	// Wired as the agent wires a node (cmd/batchpilot/agent.go): the
	// controller, the breaker with its default limits, the sampler, and the
	// timestamp normalizer.
	nd, err := node.New(node.Config{
		Name:       "bench",
		Sink:       snk,
		Controller: ctl,
		Guard:      tuner.NewBreaker(tuner.BreakerConfig{}),
		Trace:      onStep,
		Resources: func() tuner.Resources {
			r, _ := sampler.Sample(context.Background())
			return r
		},
		InitialBatchSize: initial,
		MaxBatchSize:     sc.Node.MaxBatchSize,
		MaxLinger:        sc.Node.MaxLinger.D(),
		LatencySLO:       sc.SLO.D(),
		FlushConcurrency: flush,
		MaxBatchBytes:    sc.Node.MaxBatchBytes,
		QueueRecords:     sc.Node.QueueRecords,
		ControlInterval:  sc.Node.ControlInterval.D(),
		Processors:       []node.Processor{node.TimestampNormalizer{}},
		Logger:           discard,
	})
	if err != nil {
		return Result{}, err
	}
	if p.cpuLimit > 0 {
		nd.SetLimits(node.Limits{CPULimit: p.cpuLimit})
	}
	nd.Start()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		nd.Shutdown(context.Background())
		return Result{}, err
	}
	runID := "bench" + strconv.Itoa(index)
	m := newMeter(nd.IngestHandler(), runID, nd.Config().MaxBodyBytes)
	mux := http.NewServeMux()
	mux.Handle("/v1/logs", m)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)

	// Watch the node while loadgen runs.
	var (
		mu      sync.Mutex
		samples []timedSize
		peakRSS uint64
		breaker int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				h := nd.Health()
				mu.Lock()
				samples = append(samples, timedSize{at: now, size: nd.BatchSize()})
				peakRSS = max(peakRSS, h.RSSBytes)
				if h.Breaker != tuner.BreakerClosed {
					breaker++
				}
				mu.Unlock()
			}
		}
	})
	total := sc.length(from, to)
	wg.Go(func() {
		t := time.NewTicker(p.every)
		defer t.Stop()
		began := time.Now()
		for {
			select {
			case <-stop:
				return
			case now := <-t.C:
				h := nd.Health()
				el := now.Sub(began)
				// The figures are the node's last control interval's: name
				// the phase that interval ran in, not the one starting now.
				covered := max(0, h.Time.Sub(began)-time.Millisecond)
				fmt.Fprintf(p.progress, "%s: %3.0fs/%.0fs %-12s size %5d  arriving %6.0f/s  refused %6.0f/s  written %6.0f/s  node p99 %5.0fms  queue %6d  breaker %s\n",
					p.tag, el.Seconds(), total.Seconds(), phaseAt(sc, from, to, covered), h.BatchSize,
					h.ArrivalRPS, h.RefusedRPS, h.ThroughputRPS, h.P99ms, h.QueueDepth, h.Breaker)
			}
		}
	})

	// The run lasts the schedule plus a grace time for the last answers:
	// a record still unanswered then is far past any SLO.
	grace := p.grace()
	snk.begin(time.Now())
	runCtx, cancel := context.WithTimeout(ctx, total+grace)
	rep, err := loadgen.Run(runCtx, loadgen.Config{
		Targets:      []string{"http://" + ln.Addr().String()},
		Scenario:     lsc,
		Concurrency:  sc.Senders,
		RunID:        runID,
		DrainTimeout: time.Second,
		Logger:       discard,
	})
	cancel()
	close(stop)
	wg.Wait()
	// What is still queued is past the run: fail it fast instead of
	// writing it, then stop the node and the downstream.
	snk.cut.Store(true)
	srv.Close()
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	shutErr := nd.Shutdown(sctx)
	scancel()
	simStats := sim.Stats()
	sim.Close()
	if err != nil {
		return Result{}, err
	}
	if ctx.Err() != nil {
		return Result{}, ctx.Err()
	}
	if shutErr != nil && !errors.Is(shutErr, errCutoff) {
		fmt.Fprintf(p.progress, "%s: node shutdown: %v\n", p.tag, shutErr)
	}
	if err := stepsErr(); err != nil {
		return Result{}, fmt.Errorf("write the control steps: %w", err)
	}

	// Each request's fate, from the schedule and the acknowledgements.
	planned := sched.requests()
	if !rep.Interrupted && sched.total() != rep.Totals.Offered {
		return Result{}, fmt.Errorf("the rebuilt schedule has %d records, loadgen offered %d", sched.total(), rep.Totals.Offered)
	}
	outs, mismatched := outcomes(planned, m.taken(), rep.StartedAt)
	if mismatched > 0 {
		return Result{}, fmt.Errorf("%d acknowledged requests do not match the rebuilt schedule", mismatched)
	}
	var spans []span
	for _, ph := range sched.phases {
		spans = append(spans, span{name: ph.name, start: ph.start, length: ph.length})
	}
	sizes := make([]sizeSample, 0, len(samples))
	for _, s := range samples {
		sizes = append(sizes, sizeSample{t: s.at.Sub(rep.StartedAt), size: s.size})
	}
	res := summarize(ctl.Name(), spans, outs, sizes, sc.SLO.D())
	res.Decisions = map[string]int{}
	decided := nd.Decisions().Recent("", 0)
	for i := len(decided) - 1; i >= 0; i-- { // oldest first
		d := decided[i]
		res.Decisions[d.Reason]++
		if sec := int(d.Time.Sub(rep.StartedAt) / time.Second); sec >= 0 && sec < len(res.Series) {
			res.Series[sec].Reason = d.Reason
		}
	}
	res.PeakRSSBytes = peakRSS
	res.LoadgenP99ms = rep.Totals.Latency.P99
	res.LateRequests = rep.Totals.Late
	res.BreakerS = float64(breaker) * sampleEvery.Seconds()
	res.CPUSeconds = processCPU() - cpuBefore
	res.HostLoad = max(loadBefore, hostLoad())
	res.SinkRequests = simStats.Requests
	res.Sink429 = simStats.Rejected[sinksim.Kind429] + simStats.Rejected["queue_full"]
	return res, nil
}

type timedSize struct {
	at   time.Time
	size int
}

// outcomes matches the acknowledgements to the schedule's requests; a
// request acknowledged more than once (a retry after a lost answer) counts
// its first acknowledgement. mismatched counts acknowledgements that name
// no request of the schedule or disagree with its size.
func outcomes(planned []plannedRequest, acks []ack, start time.Time) (outs []outcome, mismatched int) {
	outs = make([]outcome, len(planned))
	for i, r := range planned {
		outs[i] = outcome{phase: r.phase, sec: int(r.due / time.Second), n: r.n}
	}
	for _, a := range acks {
		i := sort.Search(len(planned), func(i int) bool { return planned[i].last >= a.last })
		if i == len(planned) || planned[i].last != a.last || planned[i].n != a.n {
			mismatched++
			continue
		}
		lat := a.at.Sub(start.Add(planned[i].due))
		if o := &outs[i]; !o.acked || lat < o.latency {
			o.acked, o.latency = true, max(lat, 0)
			o.attempt, o.attemptLatency = a.sent.Sub(start), max(a.at.Sub(a.sent), 0)
		}
	}
	return outs, mismatched
}

// processCPU is the CPU time this process has used, in seconds (0 where
// it cannot be read).
func processCPU() float64 {
	p, err := process.NewProcess(int32(os.Getpid()))
	if err != nil {
		return 0
	}
	t, err := p.Times()
	if err != nil {
		return 0
	}
	return t.User + t.System
}

// hostLoad is the host's 1-minute load average (0 where it cannot be read):
// other work on the machine competes with the bench for the CPU.
func hostLoad() float64 {
	a, err := load.Avg()
	if err != nil {
		return 0
	}
	return a.Load1
}

// phaseAt names the phase running el into a run of phases [from, to).
func phaseAt(sc *Scenario, from, to int, el time.Duration) string {
	for _, ph := range sc.Phases[from:to] {
		if el < ph.Duration.D() {
			return ph.Name
		}
		el -= ph.Duration.D()
	}
	return "(drain)"
}

// errCutoff fails the writes left after a run.
var errCutoff = errors.New("bench: run over")

// cutoffSink is the node's sink. Before each write it spends the phase's
// process cost (the node's CPU work on the batch, in the flush that writes
// it, so inside the batch time the node measures); once cut, it fails
// every write at once, so that what is still queued after a run is not
// written at the downstream's pace.
type cutoffSink struct {
	sink.Sink
	cut     atomic.Bool
	process []phaseCost
	start   atomic.Int64 // unix nanoseconds of the run's start; 0 before
}

// phaseCost is a phase's process cost, until end since the run's start.
type phaseCost struct {
	end  time.Duration
	cost *ProcessCost
}

// processCosts lists the process costs of phases [from, to), or nil when
// none has one.
func (sc *Scenario) processCosts(from, to int) []phaseCost {
	var out []phaseCost
	var end time.Duration
	has := false
	for _, p := range sc.Phases[from:to] {
		end += p.Duration.D()
		out = append(out, phaseCost{end: end, cost: p.Process})
		has = has || p.Process != nil
	}
	if !has {
		return nil
	}
	return out
}

// costAt is the process cost in force el into the run: the last phase's
// after the end.
func costAt(costs []phaseCost, el time.Duration) *ProcessCost {
	for _, c := range costs {
		if el < c.end {
			return c.cost
		}
	}
	if len(costs) == 0 {
		return nil
	}
	return costs[len(costs)-1].cost
}

func (s *cutoffSink) begin(t time.Time) { s.start.Store(t.UnixNano()) }

func (s *cutoffSink) Write(ctx context.Context, b *sink.Batch) error {
	if s.cut.Load() {
		return errCutoff
	}
	if start := s.start.Load(); start != 0 && s.process != nil {
		el := time.Duration(time.Now().UnixNano() - start)
		burn(costAt(s.process, el).of(len(b.Records)))
	}
	return s.Sink.Write(ctx, b)
}
