package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/batchpilot/batchpilot/loadgen/sinksim"
)

func init() {
	register("sinksim", "a downstream simulator: accepts NDJSON batches at a configurable cost", runSinksim)
}

func runSinksim(ctx context.Context, args []string) error {
	fs := newFlagSet("sinksim", "sinksim [flags]\n\n"+
		"An HTTP server that accepts POSTs of NDJSON (or a JSON array; gzip accepted) on any path and\n"+
		"answers 200 {\"accepted\": N} once the request's cost is paid. GET /stats answers the counters\n"+
		"({\"requests\", \"records\", \"bytes\", ...}), GET /ids the kept ids. Prints its address on stderr\n"+
		"and the final stats on stdout. See docs/loadtesting.md.")
	addr := fs.String("addr", "127.0.0.1:8490", "listen address (port 0: any free port)")
	perRequest := fs.Duration("per-request", 0, "fixed cost of every accepted request")
	perRecord := fs.Duration("per-record", 0, "cost of each record")
	perByte := fs.Duration("per-byte", 0, "cost of each byte of the decoded body (e.g. 2ns)")
	jitter := fs.Duration("jitter", 0, "adds a uniform [0, jitter) to each request's cost")
	kneeBatch := fs.Int("knee-batch", 0, "records of a request beyond this many cost --knee-factor times --per-record (0: no knee)")
	kneeFactor := fs.Float64("knee-factor", 10, "how much more a record beyond the knee costs")
	kneeBytes := fs.Int64("knee-bytes", 0, "aggregate knee: past this many decoded bytes being served at once, by all clients\ntogether, every request that starts pays its cost × (in-flight bytes / knee)^--knee-exponent\n(a database under lock contention; 0: none)")
	kneeRequests := fs.Int("knee-requests", 0, "aggregate knee on the requests being served at once, as --knee-bytes (0: none)")
	kneeExponent := fs.Float64("knee-exponent", sinksim.DefaultKneeExponent, "how steeply the service time grows past the aggregate knee (1 to 16)")
	maxConc := fs.Int("max-concurrency", 0, "requests paying their cost at once (0: no limit); the rest wait in line")
	queue := fs.Int("queue", 0, "requests that may wait for a slot (0: any number, -1: none); beyond it: 429")
	errorRate := fs.Float64("error-rate", 0, "fraction of requests answered with an injected error instead")
	errorKinds := fs.String("error-kinds", "503", "comma-separated kinds drawn evenly for injected errors: 429, 503 (with\nRetry-After), timeout (no answer until the client gives up or --timeout-hold passes)")
	retryAfter := fs.Duration("retry-after", time.Second, "Retry-After sent with 429 and 503, rounded up to seconds (negative: none)")
	timeoutHold := fs.Duration("timeout-hold", 30*time.Second, "how long an injected timeout holds a request")
	scenario := fs.String("scenario", "", "a JSON file of cost phases over time (slow-down, brown-out, recovery) that\noverride the flags above while they last")
	keepIDs := fs.Bool("keep-ids", false, "keep every accepted record's \"id\" (GET /ids, duplicate_ids in /stats)")
	idsFile := fs.String("ids-file", "", "on exit, write the kept ids to FILE, one per line (implies --keep-ids)")
	validate := fs.Bool("validate", false, "answer 400 {\"error\", \"line\"} for a line that is not JSON")
	maxBody := fs.Int64("max-body", 64<<20, "largest decoded body in bytes (413 above)")
	seed := fs.Uint64("seed", 1, "seed for injected errors and jitter")
	statsEvery := fs.Duration("stats-interval", 0, "print the stats to stderr this often (0: only at exit)")
	if err := parseFlagsOnly(fs, args); err != nil {
		return err
	}
	cfg := sinksim.Config{
		Addr: *addr,
		Cost: sinksim.Cost{PerRequest: *perRequest, PerRecord: *perRecord, PerByte: *perByte, Jitter: *jitter,
			KneeBatch: *kneeBatch, KneeFactor: *kneeFactor,
			KneeBytes: *kneeBytes, KneeRequests: *kneeRequests, KneeExponent: *kneeExponent},
		ErrorRate: *errorRate, ErrorKinds: strings.Split(*errorKinds, ","), RetryAfter: *retryAfter,
		TimeoutHold: *timeoutHold, MaxConcurrency: *maxConc, Queue: *queue,
		KeepIDs: *keepIDs || *idsFile != "", Validate: *validate, MaxBody: *maxBody, Seed: *seed,
	}
	if *scenario != "" {
		sc, err := sinksim.LoadScenario(*scenario)
		if err != nil {
			return err
		}
		cfg.Scenario = sc
	}
	srv, err := sinksim.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "sinksim listening on %s\n", srv.URL())
	var tick <-chan time.Time
	if *statsEvery > 0 {
		t := time.NewTicker(*statsEvery)
		defer t.Stop()
		tick = t.C
	}
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-tick:
			b, _ := json.Marshal(srv.Stats())
			fmt.Fprintf(os.Stderr, "%s\n", b)
		}
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		srv.Close()
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(srv.Stats()); err != nil {
		return err
	}
	if *idsFile != "" {
		f, err := os.Create(*idsFile)
		if err != nil {
			return fmt.Errorf("ids file: %w", err)
		}
		w := bufio.NewWriter(f)
		for _, id := range srv.IDs() {
			w.WriteString(id)
			w.WriteByte('\n')
		}
		if err := w.Flush(); err != nil {
			f.Close()
			return fmt.Errorf("ids file: %w", err)
		}
		return f.Close()
	}
	return nil
}
