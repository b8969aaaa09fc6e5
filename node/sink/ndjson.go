package sink

import (
	"bytes"
	"errors"
	"fmt"
)

// ErrBadRecord marks a batch a sink refused because one of its records
// cannot be written as one NDJSON line: it is empty or contains a newline.
// Nothing of such a batch is written, and retrying it will not help.
var ErrBadRecord = errors.New("bad record")

// ndjsonSize is the encoded size of b: every record plus its newline.
func ndjsonSize(b *Batch) int {
	n := len(b.Records)
	for _, r := range b.Records {
		n += len(r)
	}
	return n
}

// appendNDJSON appends the records of b to dst, each followed by '\n'. It
// checks every record first and appends nothing if one is empty or holds a
// newline, since either would break the one-record-per-line framing that
// readers rely on.
func appendNDJSON(dst []byte, b *Batch) ([]byte, error) {
	for i, r := range b.Records {
		if len(r) == 0 {
			return dst, fmt.Errorf("record %d of %d is empty: %w", i, len(b.Records), ErrBadRecord)
		}
		if j := bytes.IndexByte(r, '\n'); j >= 0 {
			return dst, fmt.Errorf("record %d of %d has a newline at byte %d: %w", i, len(b.Records), j, ErrBadRecord)
		}
	}
	for _, r := range b.Records {
		dst = append(dst, r...)
		dst = append(dst, '\n')
	}
	return dst, nil
}
