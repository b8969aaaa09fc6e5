//go:build linux || darwin || freebsd || netbsd || openbsd

package sink

import "golang.org/x/sys/unix"

// diskSpace returns the bytes an unprivileged writer may still use on the
// filesystem holding dir, and the filesystem's size.
func diskSpace(dir string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	bsize := int64(st.Bsize) // uint32 on some systems
	return int64(st.Bavail) * bsize, int64(st.Blocks) * bsize, nil
}
