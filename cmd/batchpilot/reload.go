package main

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// reloadHooks are what the agent rereads on SIGHUP without a restart. Each
// part that can be reread adds itself with add while the agent starts; run
// calls every hook in the order added. A hook that fails keeps what it had
// (it must not leave a half-applied change) and says why in its error; the
// others still run.
type reloadHooks struct {
	mu    sync.Mutex
	hooks []reloadHook
	count *prometheus.CounterVec // by result: ok, error
}

type reloadHook struct {
	name string
	fn   func() error
}

// add registers fn under name ("tls certificate", "gossip key"). It is
// safe to call at any time; a reload in progress does not see it.
func (r *reloadHooks) add(name string, fn func() error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = append(r.hooks, reloadHook{name: name, fn: fn})
}

// run calls every hook and returns their errors joined. Reloads do not
// overlap: a SIGHUP during one waits for it.
func (r *reloadHooks) run(a *agent) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs []error
	for _, h := range r.hooks {
		if err := h.fn(); err != nil {
			a.log.Error("reload failed; keeping what was in use", "what", h.name, "err", err)
			errs = append(errs, fmt.Errorf("reload %s: %w", h.name, err))
			r.inc("error")
			continue
		}
		a.log.Info("reloaded", "what", h.name)
		r.inc("ok")
	}
	return errors.Join(errs...)
}

func (r *reloadHooks) inc(result string) {
	if r.count != nil {
		r.count.WithLabelValues(result).Inc()
	}
}

// register exports batchpilot_reloads_total.
func (r *reloadHooks) register(reg prometheus.Registerer) {
	r.count = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "batchpilot_reloads_total", Help: "What SIGHUP reread (one per hook), by result: ok, or error (the old one kept).",
	}, []string{"result"})
	r.count.WithLabelValues("ok")
	r.count.WithLabelValues("error")
	reg.MustRegister(r.count)
}

// reloadOnSIGHUP runs the agent's reload hooks on every SIGHUP until the
// returned stop is called. Without it a SIGHUP would end the process.
func (a *agent) reloadOnSIGHUP() (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-hup:
				a.log.Info("SIGHUP: rereading what can change without a restart")
				_ = a.reloads.run(a)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}
