package sink

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var discardLogger = slog.New(slog.DiscardHandler)

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func openFile(t *testing.T, cfg FileConfig) *File {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = discardLogger
	}
	f, err := NewFile(cfg)
	if err != nil {
		t.Fatalf("NewFile: %v", err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// record returns a small JSON record naming its batch and position.
func record(batch, i int) []byte {
	return fmt.Appendf(nil, `{"id":"b%d-r%d","msg":"hello %d"}`, batch, i, batch*i)
}

func batchOf(batch, n int) *Batch {
	b := &Batch{}
	for i := range n {
		r := record(batch, i)
		b.Records = append(b.Records, r)
		b.Bytes += len(r)
	}
	return b
}

// sizedBatch returns a batch of one record whose NDJSON encoding is exactly
// size bytes.
func sizedBatch(t *testing.T, id, size int) *Batch {
	t.Helper()
	head := fmt.Sprintf(`{"id":%d,"pad":"`, id)
	pad := size - 1 - len(head) - len(`"}`)
	if pad < 0 {
		t.Fatalf("size %d too small for a record", size)
	}
	r := []byte(head + strings.Repeat("x", pad) + `"}`)
	return &Batch{Records: [][]byte{r}, Bytes: len(r)}
}

func readLines(t *testing.T, dir string) []string {
	t.Helper()
	var lines []string
	if err := ReadSegments(dir, func(line []byte) error {
		lines = append(lines, string(line))
		return nil
	}); err != nil {
		t.Fatalf("ReadSegments: %v", err)
	}
	return lines
}

func linesOf(batches ...*Batch) []string {
	var lines []string
	for _, b := range batches {
		for _, r := range b.Records {
			lines = append(lines, string(r))
		}
	}
	return lines
}

func segmentSizes(t *testing.T, dir string) (names []string, sizes []int64) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries { // ReadDir sorts by name
		if !strings.HasPrefix(e.Name(), segmentPrefix) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, e.Name())
		sizes = append(sizes, info.Size())
	}
	return names, sizes
}

func mustWrite(t *testing.T, f *File, b *Batch) {
	t.Helper()
	if err := f.Write(context.Background(), b); err != nil {
		t.Fatalf("Write: %v", err)
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFileRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name         string
		segmentBytes int64
		batches      int
	}{
		{"one segment keeps every record once and in order", 0, 40},
		{"records spread over many segments keep their order", 2048, 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "sink")
			f := openFile(t, FileConfig{Dir: dir, SegmentBytes: tc.segmentBytes})
			var want []*Batch
			for i := range tc.batches {
				b := batchOf(i, 1+i%17)
				mustWrite(t, f, b)
				want = append(want, b)
			}
			if err := f.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if got := readLines(t, dir); !slices.Equal(got, linesOf(want...)) {
				t.Fatalf("read back %d lines, want %d in order:\n got %q\nwant %q", len(got), len(linesOf(want...)), got, linesOf(want...))
			}

			// A reopened sink continues after what is there.
			f = openFile(t, FileConfig{Dir: dir, SegmentBytes: tc.segmentBytes})
			more := batchOf(1000, 5)
			mustWrite(t, f, more)
			if err := f.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			want = append(want, more)
			if got := readLines(t, dir); !slices.Equal(got, linesOf(want...)) {
				t.Fatalf("after reopen read back %q, want %q", got, linesOf(want...))
			}
		})
	}
}

func TestFileRepairsTornLastLine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		segments map[string]string // file name → content written by hand
		wantCut  int               // bytes NewFile must cut; 0 = no repair logged
		want     []string          // whole lines expected before the new batch
	}{
		{
			name:     "a torn line after whole lines is cut",
			segments: map[string]string{"segment-00000001.ndjson": "{\"a\":1}\n{\"b\":2}\n{\"c\":"},
			wantCut:  5,
			want:     []string{`{"a":1}`, `{"b":2}`},
		},
		{
			name:     "a segment holding only a torn line is emptied",
			segments: map[string]string{"segment-00000001.ndjson": `{"torn":tr`},
			wantCut:  10,
		},
		{
			name:     "a segment ending in a newline is left alone",
			segments: map[string]string{"segment-00000001.ndjson": "{\"a\":1}\n"},
			want:     []string{`{"a":1}`},
		},
		{
			name: "only the newest segment is repaired and appended to",
			segments: map[string]string{
				"segment-00000001.ndjson": "{\"a\":1}\n",
				"segment-00000002.ndjson": "{\"b\":2}\n{\"c\":3}\n\x00\x00\x00",
			},
			wantCut: 3,
			want:    []string{`{"a":1}`, `{"b":2}`, `{"c":3}`},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			newest := ""
			for name, content := range tc.segments {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
				newest = max(newest, name)
			}
			var logs syncBuffer
			f := openFile(t, FileConfig{Dir: dir, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			st, err := os.Stat(filepath.Join(dir, newest))
			if err != nil {
				t.Fatal(err)
			}
			if want := int64(len(tc.segments[newest]) - tc.wantCut); st.Size() != want {
				t.Fatalf("newest segment is %d bytes after open, want %d", st.Size(), want)
			}

			logged := strings.Contains(logs.String(), "bytes_cut=")
			if tc.wantCut == 0 && logged {
				t.Fatalf("a clean segment was reported as repaired: %s", logs.String())
			}
			if tc.wantCut > 0 && !strings.Contains(logs.String(), fmt.Sprintf("bytes_cut=%d ", tc.wantCut)) {
				t.Fatalf("log does not say bytes_cut=%d: %s", tc.wantCut, logs.String())
			}

			next := batchOf(7, 3)
			mustWrite(t, f, next)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			want := append(slices.Clone(tc.want), linesOf(next)...)
			if got := readLines(t, dir); !slices.Equal(got, want) {
				t.Fatalf("lines after repair and write:\n got %q\nwant %q", got, want)
			}
			raw, err := os.ReadFile(filepath.Join(dir, newest))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasSuffix(raw, []byte{'\n'}) {
				t.Fatalf("newest segment is not whole lines: %q", raw)
			}
			if bytes.Contains(raw, []byte{0}) || bytes.Contains(raw, []byte(`tr{`)) || bytes.Contains(raw, []byte(`"c":{`)) {
				t.Fatalf("torn bytes survived in the newest segment: %q", raw)
			}
		})
	}
}

func TestFileRotatesAtSegmentSize(t *testing.T) {
	const segmentBytes = 1000
	for _, tc := range []struct {
		name      string
		batches   []int // encoded size of each batch
		wantSizes []int64
	}{
		{"batches that fill a segment exactly share it", []int{500, 500, 500}, []int64{1000, 500}},
		{"a batch that would cross the size starts a new segment", []int{600, 600, 300}, []int64{600, 900}},
		{"a batch larger than the size gets a segment of its own", []int{100, 1500, 100}, []int64{100, 1500, 100}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := openFile(t, FileConfig{Dir: dir, SegmentBytes: segmentBytes})
			var written []*Batch
			for i, size := range tc.batches {
				b := sizedBatch(t, i, size)
				mustWrite(t, f, b)
				written = append(written, b)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			names, sizes := segmentSizes(t, dir)
			if !slices.Equal(sizes, tc.wantSizes) {
				t.Fatalf("segment sizes %v (%v), want %v", sizes, names, tc.wantSizes)
			}
			for i, name := range names {
				if want := segmentName(uint64(i + 1)); name != want {
					t.Fatalf("segment %d is named %s, want %s", i, name, want)
				}
			}
			if got := readLines(t, dir); !slices.Equal(got, linesOf(written...)) {
				t.Fatalf("rotation lost or reordered records: got %d lines, want %d", len(got), len(linesOf(written...)))
			}
			if got := f.Stats().Segments; got != uint64(len(tc.wantSizes)) {
				t.Fatalf("Stats().Segments = %d, want %d", got, len(tc.wantSizes))
			}
		})
	}
}

func TestFileConcurrentWritersWriteWholeLinesAndEveryRecord(t *testing.T) {
	const (
		writers = 8
		batches = 60
		records = 16
	)
	dir := t.TempDir()
	// Small segments so that rotation runs under concurrency too.
	f := openFile(t, FileConfig{Dir: dir, SegmentBytes: 32 << 10})
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				batch := &Batch{}
				for r := range records {
					rec := fmt.Appendf(nil, `{"w":%d,"b":%d,"r":%d,"pad":%q}`, w, b, r, strings.Repeat("p", (w*7+b*3+r)%90))
					batch.Records = append(batch.Records, rec)
					batch.Bytes += len(rec)
				}
				if err := f.Write(context.Background(), batch); err != nil {
					errs <- fmt.Errorf("writer %d batch %d: %w", w, b, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	type key struct{ w, b, r int }
	seen := map[key]bool{}
	last := make([]int, writers) // last (b*records+r) seen per writer
	for i := range last {
		last[i] = -1
	}
	lines := readLines(t, dir)
	for n, line := range lines {
		var rec struct{ W, B, R int }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("line %d is not a whole record: %v: %q", n, err, line)
		}
		k := key{rec.W, rec.B, rec.R}
		if seen[k] {
			t.Fatalf("record %+v written twice", k)
		}
		seen[k] = true
		if pos := rec.B*records + rec.R; pos <= last[rec.W] {
			t.Fatalf("writer %d's records out of order at line %d", rec.W, n)
		} else {
			last[rec.W] = pos
		}
	}
	if len(lines) != writers*batches*records {
		t.Fatalf("read %d records, want %d", len(lines), writers*batches*records)
	}
	if st := f.Stats(); st.Batches != writers*batches || st.Syncs == 0 {
		t.Fatalf("Stats() = %+v, want %d batches", st, writers*batches)
	}
}

// faults makes the segments of a test's sink fail on demand.
type faults struct {
	mu            sync.Mutex
	writeFails    int   // fail this many coming writes...
	partial       int   // ...after writing this many bytes of each
	truncateFails int   // fail this many coming truncates
	syncErr       error // every sync fails with this
	hold          *syncHold
	syncs         int
}

// syncHold parks the next Sync until release is closed.
type syncHold struct {
	started chan struct{}
	release chan struct{}
}

type faultySegment struct {
	segmentFile
	f *faults
}

func (f *faults) wrap(s segmentFile) segmentFile { return &faultySegment{segmentFile: s, f: f} }

func (s *faultySegment) WriteAt(p []byte, off int64) (int, error) {
	s.f.mu.Lock()
	fail := s.f.writeFails > 0
	if fail {
		s.f.writeFails--
	}
	partial := min(s.f.partial, len(p))
	s.f.mu.Unlock()
	if !fail {
		return s.segmentFile.WriteAt(p, off)
	}
	n, err := s.segmentFile.WriteAt(p[:partial], off)
	if err != nil {
		return n, err
	}
	return n, syscall.ENOSPC
}

func (s *faultySegment) Truncate(size int64) error {
	s.f.mu.Lock()
	fail := s.f.truncateFails > 0
	if fail {
		s.f.truncateFails--
	}
	s.f.mu.Unlock()
	if fail {
		return syscall.EIO
	}
	return s.segmentFile.Truncate(size)
}

func (s *faultySegment) Sync() error {
	s.f.mu.Lock()
	s.f.syncs++
	hold, err := s.f.hold, s.f.syncErr
	s.f.hold = nil
	s.f.mu.Unlock()
	if hold != nil {
		close(hold.started)
		<-hold.release
	}
	if err != nil {
		return err
	}
	return s.segmentFile.Sync()
}

func TestFileFailedWriteLeavesNoPartialLine(t *testing.T) {
	for _, tc := range []struct {
		name          string
		partial       int
		truncateFails int
	}{
		{"a write that fails half way is cut back", 100, 0},
		{"a write that fails before any byte leaves the segment as it was", 0, 0},
		{"a failed cut-back is retried before the next write", 100, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			flt := &faults{}
			f := openFile(t, FileConfig{Dir: dir, wrapSegment: flt.wrap})
			// The third batch is shorter than what the failed write leaves,
			// so overwriting alone would not hide a missing cut-back.
			first, failed, third := batchOf(1, 4), batchOf(2, 4), batchOf(3, 1)
			mustWrite(t, f, first)
			before, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
			if err != nil {
				t.Fatal(err)
			}

			flt.mu.Lock()
			flt.writeFails, flt.partial, flt.truncateFails = 1, tc.partial, tc.truncateFails
			flt.mu.Unlock()
			err = f.Write(context.Background(), failed)
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("Write on a full disk returned %v, want an error wrapping ENOSPC", err)
			}
			if tc.truncateFails == 0 {
				after, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(after, before) {
					t.Fatalf("segment after a failed write:\n%q\nwant it as before:\n%q", after, before)
				}
			}

			mustWrite(t, f, third)
			after, err := os.ReadFile(filepath.Join(dir, segmentName(1)))
			if err != nil {
				t.Fatal(err)
			}
			if want := string(before) + strings.Join(linesOf(third), "\n") + "\n"; string(after) != want {
				t.Fatalf("segment after the next write:\n%q\nwant\n%q", after, want)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got, want := readLines(t, dir), linesOf(first, third); !slices.Equal(got, want) {
				t.Fatalf("lines after a failed write:\n got %q\nwant %q", got, want)
			}
			if got := f.Stats().WriteErrors; got != 1 {
				t.Fatalf("Stats().WriteErrors = %d, want 1", got)
			}
		})
	}
}

func TestFileFsyncFailureFailsWritesUntilReopened(t *testing.T) {
	dir := t.TempDir()
	flt := &faults{syncErr: syscall.EIO}
	f := openFile(t, FileConfig{Dir: dir, wrapSegment: flt.wrap})

	if err := f.Write(context.Background(), batchOf(1, 2)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Write with a failing fsync returned %v, want an error wrapping EIO", err)
	}
	flt.mu.Lock()
	flt.syncErr = nil
	flt.mu.Unlock()
	if err := f.Write(context.Background(), batchOf(2, 2)); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Write after a failed fsync returned %v, want the sticky EIO", err)
	}
	if err := f.Ready(context.Background()); err == nil {
		t.Fatal("Ready after a failed fsync returned nil")
	}
	if err := f.Close(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Close after a failed fsync returned %v, want it to report EIO", err)
	}

	f = openFile(t, FileConfig{Dir: dir})
	if err := f.Write(context.Background(), batchOf(3, 2)); err != nil {
		t.Fatalf("Write after reopening: %v", err)
	}
}

func TestFileGroupCommitSharesOneFsyncAmongWaitingBatches(t *testing.T) {
	hold := &syncHold{started: make(chan struct{}), release: make(chan struct{})}
	flt := &faults{hold: hold}
	f := openFile(t, FileConfig{Dir: t.TempDir(), wrapSegment: flt.wrap})

	results := make(chan error, 4)
	write := func(i int) { results <- f.Write(context.Background(), batchOf(i, 3)) }
	go write(0)
	select {
	case <-hold.started: // the first batch's fsync is running and held
	case <-time.After(10 * time.Second):
		t.Fatal("the first batch's fsync never started")
	}
	for i := 1; i <= 3; i++ {
		go write(i)
	}
	waitFor(t, "three batches to queue behind the running fsync", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.pending.writers == 3
	})
	close(hold.release)
	for range 4 {
		if err := <-results; err != nil {
			t.Fatalf("Write: %v", err)
		}
	}
	flt.mu.Lock()
	syncs := flt.syncs
	flt.mu.Unlock()
	if syncs != 2 {
		t.Fatalf("4 batches took %d fsyncs, want 2 (one for the first, one shared by the three that waited)", syncs)
	}
}

func TestFileAfterClose(t *testing.T) {
	f := openFile(t, FileConfig{Dir: t.TempDir()})
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Write returns ErrClosed", func() error { return f.Write(context.Background(), batchOf(1, 1)) }},
		{"an empty Write returns ErrClosed", func() error { return f.Write(context.Background(), &Batch{}) }},
		{"Ready returns ErrClosed", func() error { return f.Ready(context.Background()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.call(); !errors.Is(err, ErrClosed) {
				t.Fatalf("got %v, want ErrClosed", err)
			}
		})
	}
	if err := f.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestFileRefusesBadRecordsWhole(t *testing.T) {
	for _, tc := range []struct {
		name    string
		records []string
	}{
		{"a record with a newline", []string{`{"a":1}`, "{\"b\":\n2}"}},
		{"an empty record", []string{`{"a":1}`, ``}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := openFile(t, FileConfig{Dir: dir})
			b := &Batch{}
			for _, r := range tc.records {
				b.Records = append(b.Records, []byte(r))
			}
			if err := f.Write(context.Background(), b); !errors.Is(err, ErrBadRecord) {
				t.Fatalf("Write returned %v, want ErrBadRecord", err)
			}
			good := batchOf(1, 2)
			mustWrite(t, f, good)
			if got := readLines(t, dir); !slices.Equal(got, linesOf(good)) {
				t.Fatalf("lines %q, want only the good batch %q", got, linesOf(good))
			}
		})
	}
}

func TestFileWriteWithEndedContextWritesNothing(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, FileConfig{Dir: dir})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Write(ctx, batchOf(1, 2)); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write returned %v, want context.Canceled", err)
	}
	if got := readLines(t, dir); len(got) != 0 {
		t.Fatalf("a cancelled Write wrote %q", got)
	}
}

func TestFileDirectoryIsLockedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, FileConfig{Dir: dir})
	if g, err := NewFile(FileConfig{Dir: dir, Logger: discardLogger}); err == nil {
		g.Close()
		t.Fatal("a second sink opened a directory that is in use")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	openFile(t, FileConfig{Dir: dir})
}

func TestFileReady(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string)
		ready  bool
	}{
		{"an open sink with a writable directory is ready", func(*testing.T, string) {}, true},
		{"a sink whose directory is gone is not ready", func(t *testing.T, dir string) {
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "sink")
			f := openFile(t, FileConfig{Dir: dir})
			tc.damage(t, dir)
			if err := f.Ready(context.Background()); (err == nil) != tc.ready {
				t.Fatalf("Ready() = %v, want ready=%v", err, tc.ready)
			}
		})
	}
}

func TestReadSegments(t *testing.T) {
	errStop := errors.New("stop here")
	for _, tc := range []struct {
		name    string
		files   map[string]string
		stopAt  int // fn fails on this line (1-based); 0 = never
		want    []string
		wantErr error
	}{
		{
			name: "segments are read in numeric order",
			files: map[string]string{
				"segment-00000010.ndjson":  "c\n",
				"segment-00000002.ndjson":  "a\nb\n",
				"segment-100000000.ndjson": "d\n",
			},
			want: []string{"a", "b", "c", "d"},
		},
		{
			name:  "a torn final line is skipped",
			files: map[string]string{"segment-00000001.ndjson": "a\nb\ntor"},
			want:  []string{"a", "b"},
		},
		{
			name: "files that are not segments are ignored",
			files: map[string]string{
				"segment-00000001.ndjson": "a\n",
				".lock":                   "",
				"notes.txt":               "x\n",
				"segment-x.ndjson":        "y\n",
			},
			want: []string{"a"},
		},
		{
			name:    "an error from fn stops the read and is returned",
			files:   map[string]string{"segment-00000001.ndjson": "a\nb\nc\n"},
			stopAt:  2,
			want:    []string{"a", "b"},
			wantErr: errStop,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			err := ReadSegments(dir, func(line []byte) error {
				got = append(got, string(line))
				if len(got) == tc.stopAt {
					return errStop
				}
				return nil
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("ReadSegments error %v, want %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Fatalf("lines %q, want %q", got, tc.want)
			}
		})
	}
}

func TestReadSegmentsReturnsLinesLongerThanItsBuffer(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, FileConfig{Dir: dir})
	huge := sizedBatch(t, 1, 5<<20)
	small := batchOf(2, 3)
	huge2 := sizedBatch(t, 3, (1<<20)+1) // just past the reader's buffer
	for _, b := range []*Batch{small, huge, small, huge2} {
		mustWrite(t, f, b)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got := readLines(t, dir)
	want := linesOf(small, huge, small, huge2)
	if len(got) != len(want) {
		t.Fatalf("read %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d: %d bytes, want %d bytes", i, len(got[i]), len(want[i]))
		}
	}
}

func TestReadSegmentsOfMissingDirectoryFails(t *testing.T) {
	err := ReadSegments(filepath.Join(t.TempDir(), "nope"), func([]byte) error { return nil })
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadSegments of a missing directory returned %v, want ErrNotExist", err)
	}
}

func TestNewFileRejectsBadConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  FileConfig
	}{
		{"no directory", FileConfig{}},
		{"a negative segment size", FileConfig{Dir: t.TempDir(), SegmentBytes: -1}},
		{"a directory that is a file", FileConfig{Dir: file}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = discardLogger
			if f, err := NewFile(tc.cfg); err == nil {
				f.Close()
				t.Fatal("NewFile accepted it")
			}
		})
	}
}

func TestFileFullDiskRefusesBatchesWholeAndRecoversByItself(t *testing.T) {
	const MiB = 1 << 20
	for _, tc := range []struct {
		name              string
		free, total       int64
		minFree           int64
		enospc            bool // the write itself fails with ENOSPC
		refused           bool
		wantReadyNoSpace  bool
		wantDiskFullAfter bool
	}{
		{"room above the floor: written", 200 * MiB, 1000 * MiB, 64 * MiB, false, false, false, false},
		{"a batch that would go below the floor is refused, and not ready until one fits", 64*MiB + 100, 1000 * MiB, 64 * MiB, false, true, true, true},
		{"free space under the floor: refused and not ready", 10 * MiB, 1000 * MiB, 64 * MiB, false, true, true, true},
		{"the floor is at most a tenth of a small filesystem", 2 * MiB, 8 * MiB, 64 * MiB, false, false, false, false},
		{"a small filesystem below its tenth is refused", 700 << 10, 8 * MiB, 64 * MiB, false, true, true, true},
		{"no floor: the disk's own ENOSPC refuses the batch", 100 * MiB, 1000 * MiB, 0, true, true, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			var mu sync.Mutex
			free := tc.free
			flt := &faults{}
			f := openFile(t, FileConfig{Dir: dir, MinFreeBytes: tc.minFree, wrapSegment: flt.wrap,
				space: func(string) (int64, int64, error) {
					mu.Lock()
					defer mu.Unlock()
					return free, tc.total, nil
				}})
			if tc.enospc {
				flt.mu.Lock()
				flt.writeFails, flt.partial = 1, 10
				flt.mu.Unlock()
			}
			b := batchOf(1, 4)
			err := f.Write(context.Background(), b)
			if got := errors.Is(err, ErrNoSpace); got != tc.refused {
				t.Fatalf("Write: %v; refused for space %v, want %v", err, got, tc.refused)
			}
			if err := f.Ready(context.Background()); errors.Is(err, ErrNoSpace) != tc.wantReadyNoSpace {
				t.Fatalf("Ready: %v; want no-space %v", err, tc.wantReadyNoSpace)
			}
			st := f.Stats()
			if st.DiskFull != tc.wantDiskFullAfter || (st.NoSpace > 0) != tc.refused {
				t.Fatalf("Stats: disk full %v, no-space batches %d; want %v, refused %v", st.DiskFull, st.NoSpace, tc.wantDiskFullAfter, tc.refused)
			}
			if tc.refused {
				if lines := readLines(t, dir); len(lines) != 0 {
					t.Fatalf("a refused batch left lines: %q", lines)
				}
			}
			// Space comes back: the next batch goes through, nothing reopened.
			mu.Lock()
			free = 500 * MiB
			mu.Unlock()
			next := batchOf(2, 3)
			mustWrite(t, f, next)
			if err := f.Ready(context.Background()); err != nil {
				t.Fatalf("Ready after space came back: %v", err)
			}
			if f.Stats().DiskFull {
				t.Fatal("still disk full after a batch was written")
			}
			want := linesOf(next)
			if !tc.refused {
				want = linesOf(b, next)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if got := readLines(t, dir); !slices.Equal(got, want) {
				t.Fatalf("lines:\n got %q\nwant %q", got, want)
			}
		})
	}
}
