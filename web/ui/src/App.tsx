// The dashboard: the cluster, live charts per node, budgets, the decision
// log and the limits editor, all fed by one Server-Sent Events stream from
// the node that served the page.

import { useCallback, useEffect, useRef, useState } from 'react';
import { getBudgetDecisions, getDecisions, type BudgetDecisionsAnswer, type Decision, type Snapshot } from './api';
import { Admission } from './components/Admission';
import { BudgetDecisions } from './components/BudgetDecisions';
import { Budgets } from './components/Budgets';
import { Chart } from './components/Chart';
import { ClusterPanel } from './components/ClusterPanel';
import { DecisionLog, mergeDecisions } from './components/DecisionLog';
import { LimitsEditor } from './components/LimitsEditor';
import { StatusBar } from './components/StatusBar';
import { SeriesStore } from './series';
import { useEventStream, type EventSourceFactory } from './stream';

export interface AppProps {
  /** For tests: where the stream comes from and the decisions' source. */
  eventSource?: EventSourceFactory;
  fetchDecisions?: () => Promise<Decision[]>;
  fetchBudgetDecisions?: () => Promise<BudgetDecisionsAnswer>;
}

const defaultFetchDecisions = async () => (await getDecisions(200)).decisions;
const defaultFetchBudgetDecisions = () => getBudgetDecisions(20);

/** How often the leader's budget decisions are read again. */
const budgetPollMs = 5000;

export function App({ eventSource, fetchDecisions = defaultFetchDecisions, fetchBudgetDecisions = defaultFetchBudgetDecisions }: AppProps) {
  const store = useRef(new SeriesStore()).current;
  const [snap, setSnap] = useState<Snapshot | null>(null);
  const [version, setVersion] = useState(0);
  const [decisions, setDecisions] = useState<Decision[]>([]);
  const pending = useRef<Decision[]>([]);
  const [focus, setFocus] = useState<string | null>(null);

  const onSnapshot = useCallback(
    (s: Snapshot) => {
      store.push(s);
      setSnap(s);
      setVersion(store.version);
      if (pending.current.length) {
        const add = pending.current;
        pending.current = [];
        setDecisions((list) => mergeDecisions(list, add));
      }
    },
    [store],
  );
  // Decisions are batched until the next snapshot: one render a second.
  const onDecision = useCallback((d: Decision) => {
    pending.current.push(d);
  }, []);

  const stream = useEventStream({ onSnapshot, onDecision }, undefined, eventSource);

  // The past decisions: read whenever the stream becomes live (at start and
  // after a reconnect), retried every few seconds until it works.
  useEffect(() => {
    if (stream.connection !== 'live') return;
    let active = true;
    let retry: ReturnType<typeof setTimeout> | undefined;
    const load = () => {
      fetchDecisions()
        .then((ds) => {
          if (active) setDecisions((list) => mergeDecisions(list, ds));
        })
        .catch(() => {
          if (active) retry = setTimeout(load, 3000);
        });
    };
    load();
    return () => {
      active = false;
      if (retry) clearTimeout(retry);
    };
  }, [stream.connection, fetchDecisions]);

  // The leader's budget decisions: read while the stream is live, every
  // few seconds; a failed read keeps the last answer.
  // Only while a leader is known: without one the read is answered 503.
  const [budget, setBudget] = useState<BudgetDecisionsAnswer | null>(null);
  const leaderKnown = Boolean(snap?.leader?.name);
  useEffect(() => {
    if (stream.connection !== 'live' || !leaderKnown) return;
    let active = true;
    const load = () => {
      fetchBudgetDecisions()
        .then((a) => {
          if (active) setBudget(a);
        })
        .catch(() => {});
    };
    load();
    const timer = setInterval(load, budgetPollMs);
    return () => {
      active = false;
      clearInterval(timer);
    };
  }, [stream.connection, leaderKnown, fetchBudgetDecisions]);

  const stale = stream.connection === 'stale';
  const limits = snap?.limits ?? null;
  const colorOf = useCallback((name: string) => store.nodeIndex(name), [store]);
  const nodes = snap ? snap.members.map((m) => m.name).filter(Boolean) : [];

  return (
    <div className="app">
      <header>
        <h1>batchpilot</h1>
        <StatusBar connection={stream.connection} lastSnapshotAt={stream.lastSnapshotAt} cluster={snap} />
      </header>
      <main>
        <ClusterPanel cluster={snap} stale={stale} colorOf={colorOf} servedBy={snap?.served_by} focus={focus} onFocus={setFocus} />
        <section className={'panel' + (stale ? ' stale' : '')} aria-label="charts">
          <div className="panel-head">
            <h2>Per node, every second</h2>
            <span className="muted">{focus ? `${focus} picked out; click its row again for all` : 'click a member to pick it out'}</span>
          </div>
          <div className="charts">
            <Chart title="Batch size" unit="records" metric="batch_size" store={store} version={version} focus={focus} />
            <Chart title="Throughput" unit="records/s" metric="throughput_rps" store={store} version={version} focus={focus} />
            <Chart title="p99 latency" unit="ms" metric="p99_ms" store={store} version={version} focus={focus} limit={limits?.slo_ms} limitLabel="SLO" />
            <Chart title="CPU" unit="%" metric="cpu_percent" store={store} version={version} focus={focus} limit={limits?.cpu_limit_percent} limitLabel="limit" />
            <Chart title="Memory" unit="%" metric="mem_percent" store={store} version={version} focus={focus} limit={limits?.mem_limit_percent} limitLabel="limit" />
          </div>
        </section>
        <Admission node={focus ?? snap?.served_by ?? null} sloMs={limits?.slo_ms} stale={stale} />
        <Budgets cluster={snap} stale={stale} />
        <BudgetDecisions answer={budget} />
        <DecisionLog decisions={decisions} nodes={nodes} />
        <LimitsEditor limits={limits} />
      </main>
    </div>
  );
}
