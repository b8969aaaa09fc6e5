package bench

import (
	"crypto/sha256"
	"runtime"
	"time"
)

// burn spends d of the calling thread's CPU time on real work (hashing),
// the way a processor parsing or scoring records would. It measures the
// thread's own CPU clock where the platform has one, so that on a busy
// machine the work takes longer in wall time but costs the same CPU; where
// it has none, it spins for d of wall time.
func burn(d time.Duration) {
	if d <= 0 {
		return
	}
	// The thread's clock only counts this goroutine's work while the
	// goroutine stays on the thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var buf [256]byte
	start, ok := threadCPU()
	wallStart := time.Now()
	for {
		// About a microsecond of work between clock reads.
		sum := sha256.Sum256(buf[:])
		copy(buf[:], sum[:])
		if ok {
			now, _ := threadCPU()
			if now-start >= d {
				return
			}
			continue
		}
		if time.Since(wallStart) >= d {
			return
		}
	}
}
