package sink

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
)

// DefaultSegmentBytes is the size at which the file sink starts a new
// segment when FileConfig.SegmentBytes is zero.
const DefaultSegmentBytes int64 = 64 << 20

const (
	segmentPrefix = "segment-"
	segmentSuffix = ".ndjson"
	// maxPooledBuf bounds the encode buffers kept for reuse, so one huge
	// batch does not pin its buffer for the life of the process.
	maxPooledBuf = 8 << 20
)

// FileConfig configures the file sink.
type FileConfig struct {
	// Dir is the sink's own directory (the node passes <data-dir>/sink). It
	// is created if missing and holds nothing but the sink's files.
	Dir string
	// SegmentBytes is the size after which writes go to a new segment.
	// Zero means DefaultSegmentBytes. A batch never spans two segments, so
	// a segment exceeds this only when one batch alone is larger.
	SegmentBytes int64
	// Logger receives repairs, rotations and failures; nil means
	// slog.Default().
	Logger *slog.Logger
	// MinFreeBytes is the free space the sink leaves on its filesystem: a
	// batch that would take the free space below it is refused with
	// ErrNoSpace, so that what shares the filesystem (Raft's store, which
	// cannot survive a full disk) keeps room to write. It is capped at a
	// tenth of the filesystem's size, so that a small filesystem stays
	// usable. Zero or less: no floor (a full disk still fails the batch with
	// ErrNoSpace).
	MinFreeBytes int64

	// wrapSegment, set only by tests, wraps every segment file as it is
	// opened so that a test can make writes or syncs fail.
	wrapSegment func(segmentFile) segmentFile
	// space, set only by tests, replaces the filesystem's free space and
	// size.
	space func(dir string) (free, total int64, err error)
}

// segmentFile is what the sink needs of an open segment. *os.File provides
// it through osSegment; tests put a failing one in between.
type segmentFile interface {
	WriteAt(p []byte, off int64) (int, error)
	Truncate(size int64) error
	// Sync makes every byte written so far, and the file's size, durable.
	Sync() error
	Close() error
}

type osSegment struct{ *os.File }

func (s osSegment) Sync() error { return datasync(s.File) }

// FileStats are the file sink's counters since it was opened.
type FileStats struct {
	Batches     uint64 // batches written and fsynced
	Records     uint64 // records in those batches
	Bytes       uint64 // bytes in those batches, newlines included
	Syncs       uint64 // segment fsyncs; Batches/Syncs is the group-commit factor
	Segments    uint64 // segments created
	WriteErrors uint64 // writes that failed and were cut back
	NoSpace     uint64 // batches refused for want of space (ErrNoSpace)
	// DiskFull is true while the last batch was refused with ErrNoSpace
	// and none has been written since.
	DiskFull bool
}

// File is the embedded default sink: batches are appended as NDJSON, one
// record per line, to numbered segment files in one directory, and a Write
// returns only once its bytes are fsynced.
//
// Concurrent Writes append whole batches one after another under a mutex
// and then wait for an fsync that covers them. A single goroutine issues
// the fsyncs: while one runs, later batches are appended, and the next
// fsync makes all of them durable at once (group commit), so throughput
// grows with the number of concurrent writers rather than being capped at
// one batch per fsync.
//
// A write error (a full disk, say) fails that batch only: the partial bytes
// are cut off again and the sink stays usable. A full disk, or free space
// below MinFreeBytes, fails a batch with ErrNoSpace before anything of it is
// written, and the sink takes batches again as soon as there is room. An fsync error is different:
// after one, the kernel may have dropped the dirty pages, so nothing written
// since the last good fsync can be trusted. The sink then fails every
// pending and later Write and Ready until it is closed and opened again,
// which repairs the segment's tail.
type File struct {
	dir      string
	segBytes int64
	minFree  int64
	log      *slog.Logger
	wrap     func(segmentFile) segmentFile
	space    func(dir string) (free, total int64, err error)
	lock     *os.File

	// mu guards the fields below and orders appends. Lock order: mu, then
	// syncMu.
	mu        sync.Mutex
	seg       segmentFile
	segPath   string
	segIndex  uint64
	size      int64      // bytes of whole lines in seg; the next append goes here
	dirtyTail bool       // a failed append left bytes past size that could not be cut yet
	pending   *syncGroup // appends not yet covered by an fsync in progress
	closed    bool
	failed    error // sticky fsync failure

	// syncMu is held while a segment is fsynced, so that rotation and
	// Close never close a file under a running fsync.
	syncMu sync.Mutex

	kick       chan struct{} // capacity 1: "pending has writers"
	quit       chan struct{}
	syncerDone chan struct{}

	bufs sync.Pool // *[]byte encode buffers

	nBatches, nRecords, nBytes, nSyncs, nSegments, nWriteErrors, nNoSpace atomic.Uint64
	diskFull                                                              atomic.Bool
	refusedBytes                                                          atomic.Int64 // the last batch refused for space
}

// syncGroup is the set of appends that one fsync will make durable. done is
// closed after that fsync; err is its outcome.
type syncGroup struct {
	done    chan struct{}
	err     error
	writers int
}

func newSyncGroup() *syncGroup { return &syncGroup{done: make(chan struct{})} }

// NewFile opens the file sink in cfg.Dir, creating the directory if needed.
// It takes an exclusive lock on the directory, continues the newest segment
// and, if that segment ends in a torn line (a crash mid-write), cuts the
// line off, logs how many bytes went and fsyncs the result.
func NewFile(cfg FileConfig) (*File, error) {
	if cfg.Dir == "" {
		return nil, errors.New("file sink: no directory given")
	}
	if cfg.SegmentBytes < 0 {
		return nil, fmt.Errorf("file sink: segment size %d is negative", cfg.SegmentBytes)
	}
	if cfg.SegmentBytes == 0 {
		cfg.SegmentBytes = DefaultSegmentBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.space == nil {
		cfg.space = diskSpace
	}
	dir := filepath.Clean(cfg.Dir)
	if err := makeDir(dir); err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, fmt.Errorf("file sink: %w", err)
	}
	f := &File{
		dir:        dir,
		segBytes:   cfg.SegmentBytes,
		minFree:    cfg.MinFreeBytes,
		log:        cfg.Logger,
		wrap:       cfg.wrapSegment,
		space:      cfg.space,
		lock:       lock,
		pending:    newSyncGroup(),
		kick:       make(chan struct{}, 1),
		quit:       make(chan struct{}),
		syncerDone: make(chan struct{}),
	}
	if err := f.openNewest(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("file sink: %w", err)
	}
	go f.syncLoop()
	return f, nil
}

// makeDir creates dir if it is missing and then fsyncs its parent, so that
// the new directory entry survives a crash.
func makeDir(dir string) error {
	st, err := os.Stat(dir)
	if err == nil {
		if !st.IsDir() {
			return fmt.Errorf("%s is not a directory", dir)
		}
		return nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return syncDir(filepath.Dir(dir))
}

// openNewest makes the newest segment current, repairing a torn tail, or
// creates the first segment.
func (f *File) openNewest() error {
	segs, err := listSegments(f.dir)
	if err != nil {
		return err
	}
	if len(segs) == 0 {
		seg, path, err := f.createSegment(1)
		if err != nil {
			return err
		}
		f.seg, f.segPath, f.segIndex, f.size = seg, path, 1, 0
		return nil
	}
	last := segs[len(segs)-1]
	path := filepath.Join(f.dir, last.name)
	file, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open segment: %w", err)
	}
	size, err := repairTail(file)
	if err != nil {
		file.Close()
		return err
	}
	if cut := size.before - size.after; cut > 0 {
		f.log.Warn("file sink: cut a torn last line left by a crash",
			"segment", path, "bytes_cut", cut, "size", size.after)
	}
	f.seg, f.segPath, f.segIndex, f.size = f.wrapFile(file), path, last.index, size.after
	return nil
}

type tailRepair struct{ before, after int64 }

// repairTail cuts file back to its last complete line and fsyncs it if it
// ends in a torn one.
func repairTail(file *os.File) (tailRepair, error) {
	st, err := file.Stat()
	if err != nil {
		return tailRepair{}, fmt.Errorf("stat segment: %w", err)
	}
	end, err := endOfLastLine(file, st.Size())
	if err != nil {
		return tailRepair{}, fmt.Errorf("find last line of %s: %w", file.Name(), err)
	}
	r := tailRepair{before: st.Size(), after: end}
	if end == st.Size() {
		return r, nil
	}
	if err := file.Truncate(end); err != nil {
		return r, fmt.Errorf("cut torn line of %s: %w", file.Name(), err)
	}
	if err := datasync(file); err != nil {
		return r, fmt.Errorf("fsync repaired segment %s: %w", file.Name(), err)
	}
	return r, nil
}

// endOfLastLine returns the offset just past the last '\n' in the first
// size bytes of r, or 0 if there is none. It reads backwards, so it costs
// one small read when the file ends cleanly.
func endOfLastLine(r io.ReaderAt, size int64) (int64, error) {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	for end := size; end > 0; {
		start := max(end-chunk, 0)
		p := buf[:end-start]
		if _, err := r.ReadAt(p, start); err != nil {
			return 0, err
		}
		for i := len(p) - 1; i >= 0; i-- {
			if p[i] == '\n' {
				return start + int64(i) + 1, nil
			}
		}
		end = start
	}
	return 0, nil
}

func (f *File) wrapFile(file *os.File) segmentFile {
	var s segmentFile = osSegment{file}
	if f.wrap != nil {
		s = f.wrap(s)
	}
	return s
}

// createSegment creates segment index and fsyncs the directory so that the
// segment's name is durable before anything is acknowledged from it.
func (f *File) createSegment(index uint64) (segmentFile, string, error) {
	path := filepath.Join(f.dir, segmentName(index))
	file, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, "", fmt.Errorf("create segment: %w", err)
	}
	if err := syncDir(f.dir); err != nil {
		file.Close()
		os.Remove(path)
		return nil, "", fmt.Errorf("create segment %s: %w", path, err)
	}
	f.nSegments.Add(1)
	f.log.Info("file sink: new segment", "segment", path)
	return f.wrapFile(file), path, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open directory for fsync: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// Write appends the batch's records as NDJSON lines to the current segment
// and returns once they are fsynced. The batch's lines are contiguous and
// never interleave with another Write's. If ctx ends while the batch waits
// for its fsync, Write returns ctx's error although the batch may still
// become durable. A batch with an empty record or a record holding a newline
// is refused whole with ErrBadRecord.
func (f *File) Write(ctx context.Context, b *Batch) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("file sink: %w", err)
	}
	if b == nil || len(b.Records) == 0 {
		f.mu.Lock()
		closed := f.closed
		f.mu.Unlock()
		if closed {
			return ErrClosed
		}
		return nil
	}
	bufp := f.getBuf(ndjsonSize(b))
	buf, err := appendNDJSON((*bufp)[:0], b)
	if err != nil {
		f.putBuf(bufp)
		return fmt.Errorf("file sink: %w", err)
	}
	*bufp = buf
	if err := f.checkSpace(int64(len(buf))); err != nil {
		f.putBuf(bufp)
		return err
	}
	g, err := f.append(buf)
	f.putBuf(bufp)
	if err != nil {
		if errors.Is(err, ErrNoSpace) {
			f.nNoSpace.Add(1)
			f.diskFull.Store(true)
			f.refusedBytes.Store(int64(len(buf)))
		}
		return err
	}
	select {
	case f.kick <- struct{}{}:
	default: // the syncer already has a wake-up queued; it will see this group
	}
	select {
	case <-g.done:
		if g.err != nil {
			return fmt.Errorf("file sink: %w", g.err)
		}
		f.diskFull.Store(false)
		f.nBatches.Add(1)
		f.nRecords.Add(uint64(len(b.Records)))
		f.nBytes.Add(uint64(len(buf)))
		return nil
	case <-ctx.Done():
		return fmt.Errorf("file sink: batch written, fsync not yet confirmed: %w", ctx.Err())
	}
}

// append writes buf at the end of the current segment, rotating first if buf
// would take the segment past its size, and returns the group whose fsync
// will cover it. A failed write is cut back so that the segment still ends
// in a whole line.
func (f *File) append(buf []byte) (*syncGroup, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, ErrClosed
	}
	if f.failed != nil {
		return nil, fmt.Errorf("file sink failed earlier and must be reopened: %w", f.failed)
	}
	if f.dirtyTail {
		if err := f.seg.Truncate(f.size); err != nil {
			return nil, fmt.Errorf("file sink: cut back an earlier failed write in %s: %w", f.segPath, err)
		}
		f.dirtyTail = false
	}
	if f.size > 0 && f.size+int64(len(buf)) > f.segBytes {
		if err := f.rotateLocked(); err != nil {
			return nil, err
		}
	}
	if _, err := f.seg.WriteAt(buf, f.size); err != nil {
		f.nWriteErrors.Add(1)
		if terr := f.seg.Truncate(f.size); terr != nil {
			// The next append retries the cut before writing anything.
			f.dirtyTail = true
			f.log.Error("file sink: cannot cut back a failed write; the next write retries",
				"segment", f.segPath, "offset", f.size, "error", terr)
		}
		return nil, noSpace(fmt.Errorf("file sink: write %d bytes to %s at offset %d: %w", len(buf), f.segPath, f.size, err))
	}
	f.size += int64(len(buf))
	f.pending.writers++
	return f.pending, nil
}

// checkSpace refuses a batch of n bytes with ErrNoSpace when writing it
// would take the filesystem's free space below the floor. Where the free
// space cannot be read, the write's own ENOSPC is the only check.
func (f *File) checkSpace(n int64) error {
	floor, free, err := f.floor()
	if err != nil || free-n >= floor {
		return nil
	}
	f.nNoSpace.Add(1)
	f.diskFull.Store(true)
	f.refusedBytes.Store(n)
	return fmt.Errorf("file sink: %w: %d bytes free in %s, a batch of %d bytes would leave less than the %d kept free",
		ErrNoSpace, free, f.dir, n, floor)
}

// floor is the free space the sink leaves (MinFreeBytes, at most a tenth
// of the filesystem) and the free space now.
func (f *File) floor() (floor, free int64, err error) {
	free, total, err := f.space(f.dir)
	if err != nil {
		return 0, 0, err
	}
	return max(0, min(f.minFree, total/10)), free, nil
}

// FreeBytes is the free space on the sink's filesystem now, or -1 where it
// cannot be read.
func (f *File) FreeBytes() int64 {
	free, _, err := f.space(f.dir)
	if err != nil {
		return -1
	}
	return free
}

// noSpace marks err with ErrNoSpace when the filesystem ran out of space
// or quota.
func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	return err
}

// rotateLocked fsyncs the current segment, which completes the pending
// group, then switches to a new segment. If the new segment cannot be
// created the current one stays in use, whole and durable. Called with mu.
func (f *File) rotateLocked() error {
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	err := f.seg.Sync()
	f.nSyncs.Add(1)
	if err != nil {
		f.failLocked(fmt.Errorf("fsync segment %s before rotating: %w", f.segPath, err))
		return f.failed
	}
	f.finishPendingLocked(nil)
	next := f.segIndex + 1
	seg, path, err := f.createSegment(next)
	if err != nil {
		return noSpace(fmt.Errorf("file sink: rotate: %w", err))
	}
	if err := f.seg.Close(); err != nil {
		// Its contents are already durable; only the descriptor is lost.
		f.log.Warn("file sink: close old segment", "segment", f.segPath, "error", err)
	}
	f.seg, f.segPath, f.segIndex, f.size = seg, path, next, 0
	return nil
}

// finishPendingLocked completes the pending group with err and starts a new
// one. Called with mu.
func (f *File) finishPendingLocked(err error) {
	g := f.pending
	if g.writers == 0 {
		return
	}
	g.err = err
	close(g.done)
	f.pending = newSyncGroup()
}

// failLocked records a sticky failure and fails the pending group with it.
// Called with mu.
func (f *File) failLocked(err error) {
	if f.failed == nil {
		f.failed = err
		f.log.Error("file sink: fsync failed; failing all writes until reopened", "error", err)
	}
	f.finishPendingLocked(f.failed)
}

// syncLoop is the one goroutine that fsyncs for Writes. Each round takes
// every append made so far, fsyncs once, and releases their writers.
func (f *File) syncLoop() {
	defer close(f.syncerDone)
	for {
		select {
		case <-f.quit:
			return
		case <-f.kick:
		}
		f.mu.Lock()
		g := f.pending
		if g.writers == 0 {
			f.mu.Unlock()
			continue
		}
		f.pending = newSyncGroup()
		seg, path := f.seg, f.segPath
		f.syncMu.Lock()
		f.mu.Unlock()
		err := seg.Sync()
		f.syncMu.Unlock()
		f.nSyncs.Add(1)
		if err != nil {
			err = fmt.Errorf("fsync segment %s: %w", path, err)
			f.mu.Lock()
			f.failLocked(err)
			f.mu.Unlock()
		}
		g.err = err
		close(g.done)
	}
}

// Ready reports whether the sink takes writes: it is open, has not failed,
// has room above its free-space floor for a batch like the last one it
// refused, and can create a file in its directory.
func (f *File) Ready(ctx context.Context) error {
	f.mu.Lock()
	closed, failed := f.closed, f.failed
	f.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if failed != nil {
		return fmt.Errorf("file sink failed: %w", failed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// Not ready while the last batch refused for space would still be
	// refused: a node taken out of rotation comes back once there is room,
	// without waiting for a batch to prove it.
	need := int64(0)
	if f.diskFull.Load() {
		need = f.refusedBytes.Load()
	}
	if floor, free, err := f.floor(); err == nil && free-need < floor {
		return fmt.Errorf("file sink: %w: %d bytes free in %s, a batch of %d bytes would leave less than the %d kept free",
			ErrNoSpace, free, f.dir, need, floor)
	}
	probe, err := os.CreateTemp(f.dir, ".ready-*")
	if err != nil {
		return fmt.Errorf("file sink: directory not writable: %w", err)
	}
	name := probe.Name()
	err = probe.Close()
	if rerr := os.Remove(name); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("file sink: directory not writable: %w", err)
	}
	return nil
}

// Close fsyncs and closes the current segment and releases the directory.
// Writes after Close return ErrClosed; a second Close returns nil.
func (f *File) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	f.mu.Unlock()

	close(f.quit)
	<-f.syncerDone

	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	if f.dirtyTail {
		if err := f.seg.Truncate(f.size); err != nil {
			errs = append(errs, fmt.Errorf("cut back failed write in %s: %w", f.segPath, err))
		}
	}
	if f.failed != nil {
		errs = append(errs, fmt.Errorf("segment %s may have lost writes: %w", f.segPath, f.failed))
	} else {
		if err := f.seg.Sync(); err != nil {
			f.failLocked(fmt.Errorf("fsync segment %s on close: %w", f.segPath, err))
			errs = append(errs, f.failed)
		} else {
			f.nSyncs.Add(1)
			f.finishPendingLocked(nil)
		}
	}
	if err := f.seg.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close segment %s: %w", f.segPath, err))
	}
	if err := f.lock.Close(); err != nil {
		errs = append(errs, fmt.Errorf("release directory lock: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("file sink: close: %w", err)
	}
	return nil
}

// Stats returns the sink's counters.
func (f *File) Stats() FileStats {
	return FileStats{
		Batches:     f.nBatches.Load(),
		Records:     f.nRecords.Load(),
		Bytes:       f.nBytes.Load(),
		Syncs:       f.nSyncs.Load(),
		Segments:    f.nSegments.Load(),
		WriteErrors: f.nWriteErrors.Load(),
		NoSpace:     f.nNoSpace.Load(),
		DiskFull:    f.diskFull.Load(),
	}
}

func (f *File) getBuf(n int) *[]byte {
	if p, ok := f.bufs.Get().(*[]byte); ok && cap(*p) >= n {
		return p
	}
	b := make([]byte, 0, n)
	return &b
}

func (f *File) putBuf(p *[]byte) {
	if cap(*p) <= maxPooledBuf {
		f.bufs.Put(p)
	}
}

func segmentName(index uint64) string {
	return fmt.Sprintf("%s%08d%s", segmentPrefix, index, segmentSuffix)
}

type segmentEntry struct {
	index uint64
	name  string
}

// listSegments returns the segment files in dir in write order. It sorts by
// number, so the order stays right past 99,999,999 segments too.
func listSegments(dir string) ([]segmentEntry, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("list segments: %w", err)
	}
	var segs []segmentEntry
	for _, e := range entries {
		name := e.Name()
		digits, ok := strings.CutPrefix(name, segmentPrefix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		digits, ok = strings.CutSuffix(digits, segmentSuffix)
		if !ok {
			continue
		}
		index, err := strconv.ParseUint(digits, 10, 64)
		if err != nil || index == 0 {
			continue
		}
		segs = append(segs, segmentEntry{index: index, name: name})
	}
	slices.SortFunc(segs, func(a, b segmentEntry) int {
		switch {
		case a.index < b.index:
			return -1
		case a.index > b.index:
			return 1
		}
		return 0
	})
	return segs, nil
}

// ReadSegments calls fn with every complete line of every segment in dir,
// in write order, without the trailing newline. A final line with no
// newline (a torn write that NewFile has not repaired yet) is skipped. Lines
// may be of any length. line is only valid during the call. An error from
// fn stops the read and is returned wrapped with the segment and line
// number.
func ReadSegments(dir string, fn func(line []byte) error) error {
	segs, err := listSegments(dir)
	if err != nil {
		return err
	}
	r := bufio.NewReaderSize(nil, 1<<20)
	var long []byte
	for _, s := range segs {
		if err := readSegment(filepath.Join(dir, s.name), r, &long, fn); err != nil {
			return err
		}
	}
	return nil
}

func readSegment(path string, r *bufio.Reader, long *[]byte, fn func([]byte) error) error {
	file, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read segments: %w", err)
	}
	defer file.Close()
	r.Reset(file)
	for n := 1; ; n++ {
		line, err := r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// Longer than the reader's buffer: gather it in long.
			*long = append((*long)[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = r.ReadSlice('\n')
				*long = append(*long, line...)
			}
			line = *long
		}
		if err == io.EOF {
			return nil // whatever is in line has no newline: not a complete line
		}
		if err != nil {
			return fmt.Errorf("read segment %s: %w", path, err)
		}
		if err := fn(line[:len(line)-1]); err != nil {
			return fmt.Errorf("segment %s line %d: %w", path, n, err)
		}
	}
}
