package syslog

import (
	"testing"
	"time"
)

func TestASenderThatStopsMidFrameIsClosed(t *testing.T) {
	full := msg5424("whole")
	for _, tc := range []struct {
		name  string
		send  func(t *testing.T, s *Server, c *collector)
		wantN int // whole messages the server passed on
	}{
		{"octet counting: the count, then half the message, then nothing", func(t *testing.T, s *Server, _ *collector) {
			c := dial(t, "tcp", s)
			write(t, c, octet(full)[:20])
			waitClosedByServer(t, c)
		}, 0},
		{"newline framing: a line without its end", func(t *testing.T, s *Server, _ *collector) {
			c := dial(t, "tcp", s)
			write(t, c, full)
			waitClosedByServer(t, c)
		}, 0},
		{"a trickle of one byte at a time never finishes its frame", func(t *testing.T, s *Server, _ *collector) {
			c := dial(t, "tcp", s)
			msg := octet(full)
			for i := 0; i < len(msg); i++ {
				if _, err := c.Write([]byte{msg[i]}); err != nil {
					return // closed by the server
				}
				// One byte per 40 ms; a read that does not time out means
				// the server closed the connection.
				_ = c.SetReadDeadline(time.Now().Add(40 * time.Millisecond))
				if _, err := c.Read(make([]byte, 1)); !isTimeout(err) {
					return
				}
			}
			t.Fatalf("the whole %d-byte message went through one byte at a time", len(msg))
		}, 0},
		{"a whole message after a long quiet spell is taken: the wait before a frame is idle time", func(t *testing.T, s *Server, col *collector) {
			c := dial(t, "tcp", s)
			write(t, c, octet(msg5424("first")))
			col.waitMessages(t, "first")
			time.Sleep(300 * time.Millisecond) // longer than FrameTimeout: the fault under test is the quiet sender
			write(t, c, octet(full))
			col.waitMessages(t, "first", "whole")
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			col := &collector{}
			s := startServer(t, Config{Handler: col.handle, IdleTimeout: time.Minute, FrameTimeout: 150 * time.Millisecond})
			tc.send(t, s, col)
			if tc.wantN == 0 {
				waitFor(t, "the connection counted malformed and gone", func() bool {
					st := s.Stats()
					return st.Malformed == 1 && st.Connections == 0
				})
			}
			if got := col.len(); got != tc.wantN {
				t.Fatalf("%d messages passed on, want %d", got, tc.wantN)
			}
		})
	}
}
