package cluster

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func worstCaseMeta() meta {
	return meta{
		ID:        strings.Repeat("i", maxIDLen),
		Role:      RoleServer,
		HTTPAddr:  strings.Repeat("h", maxAddrLen),
		ClusterID: strings.Repeat("c", maxIDLen),
		Version:   strings.Repeat("v", maxVersionLen),
		Raft: RaftMeta{
			Addr:            strings.Repeat("r", maxAddrLen),
			BootstrapExpect: math.MaxInt32,
			HasState:        true,
			BootstrapView:   math.MaxUint64,
		},
		Leaving: true,
	}
}

func TestMetaWorstCaseFitsMemberlistLimit(t *testing.T) {
	b, err := encodeMeta(worstCaseMeta())
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > memberlist.MetaMaxSize {
		t.Fatalf("worst-case meta is %d bytes, over memberlist's %d", len(b), memberlist.MetaMaxSize)
	}
	t.Logf("worst-case meta: %d of %d bytes", len(b), memberlist.MetaMaxSize)
}

func TestMetaRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    meta
	}{
		{"a worker", meta{Role: RoleWorker}},
		{"worst case", worstCaseMeta()},
		{"typical server", meta{
			ID: "7b0c6c1e-6c1f-4b7e-9a53-2f6f3c1d2e10", Role: RoleServer, HTTPAddr: "127.0.0.1:8480",
			ClusterID: "c0ffee", Version: "0.2.0",
			Raft: RaftMeta{Addr: "127.0.0.1:8300", BootstrapExpect: 3, BootstrapView: 12345},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeMeta(tc.m)
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeMeta(b)
			if err != nil {
				t.Fatal(err)
			}
			want := tc.m
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestMetaRejectsWhatDoesNotFit(t *testing.T) {
	m := meta{ID: strings.Repeat("x", maxIDLen+1)}
	if _, err := encodeMeta(m); err == nil {
		t.Fatal("an id over the limit was encoded")
	}
	m = meta{Raft: RaftMeta{Addr: strings.Repeat("x", maxAddrLen+1)}}
	if _, err := encodeMeta(m); err == nil {
		t.Fatal("an address over the limit was encoded")
	}
}

func TestDecodeMetaRejectsTruncatedAndForeignMeta(t *testing.T) {
	full, err := encodeMeta(worstCaseMeta())
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < len(full); n++ {
		if _, err := decodeMeta(full[:n]); err == nil {
			t.Fatalf("meta truncated to %d of %d bytes decoded without error", n, len(full))
		}
	}
	if _, err := decodeMeta([]byte{99, 0, 0}); err == nil || !strings.Contains(err.Error(), "version") {
		t.Fatalf("foreign version: err = %v", err)
	}
}

func FuzzDecodeMeta(f *testing.F) {
	seed, _ := encodeMeta(worstCaseMeta())
	f.Add(seed)
	f.Add([]byte{metaVersion, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMeta(b)
		if err != nil {
			return
		}
		// The guard's shortcut reads the same cluster id.
		if cid, err := metaClusterID(b); err != nil || string(cid) != m.ClusterID {
			t.Fatalf("metaClusterID = %q, %v; decodeMeta's is %q", cid, err, m.ClusterID)
		}
		// Whatever decodes must encode again and decode to the same.
		b2, err := encodeMeta(m)
		if err != nil {
			t.Fatalf("decoded meta does not encode: %v", err)
		}
		m2, err := decodeMeta(b2)
		if err != nil || !reflect.DeepEqual(m, m2) {
			t.Fatalf("re-encoding changed the meta: %v\n%+v\n%+v", err, m, m2)
		}
	})
}
