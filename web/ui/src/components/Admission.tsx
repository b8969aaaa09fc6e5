// Admission: a node holds only what it can write within its latency
// budget. This panel shows, for one node, the delay bound in force, the
// wait a record queued now can expect, how deep the queue may grow, and
// what was refused in the last control interval and why; and which CPU
// limit acts (the host's CPUs or a cgroup quota) with the node's share of
// it, and whether the node is under CPU or memory pressure, in which case it
// refuses every new request until the pressure clears. The figures are
// the node's own health (GET /api/v1/nodes/{name}), read every few seconds.

import { useEffect, useState } from 'react';
import { getNode, type AdmissionHealth, type CPUAllowance, type NodeView } from '../api';
import { num } from '../format';

/** What each refusal reason means, as the node names them. */
export const WHY: Record<string, string> = {
  delay: 'the expected wait (queue / drain rate) would pass the bound',
  sojourn: 'the oldest queued record already waited past the budget',
  records: "the queue's hard bound in records",
  bytes: "the queue's hard bound in bytes",
  cpu: 'the node is over its CPU limit: every new request is refused until it clears',
  memory: 'the node is over its memory limit: every new request is refused until it clears',
};

/** Which CPU limit acts, and the node's share of it. */
export function cpuLimitText(allowance: CPUAllowance, cpuPercent?: number): string {
  const what = allowance.source === 'host' ? "the host's CPUs" : `${allowance.source} quota`;
  const share = cpuPercent === undefined ? '' : `${num(cpuPercent)}% of `;
  return `CPU ${share}${allowance.cores.toFixed(2)} cores (${what}${allowance.file ? ': ' + allowance.file : ''})`;
}

function pct(v: number, of: number): number {
  if (!(of > 0)) return 0;
  return Math.max(0, Math.min(100, (v / of) * 100));
}

export interface AdmissionViewProps {
  name: string;
  adm: AdmissionHealth;
  depth: number;
  sloMs?: number;
  cpuAllowance?: CPUAllowance;
  cpuPercent?: number;
}

export function AdmissionView({ name, adm, depth, sloMs, cpuAllowance, cpuPercent }: AdmissionViewProps) {
  const measured = adm.max_queue > 0;
  const refusedBy = Object.entries(adm.refused_by ?? {}).sort((a, b) => b[1] - a[1]);
  return (
    <div className="admission" data-testid="admission">
      <div className="bar-label">
        {name}: expected wait <b>{num(adm.expected_delay_ms)} ms</b> of a <b>{num(adm.delay_bound_ms)} ms</b> delay bound
        {sloMs ? <> (SLO {num(sloMs)} ms)</> : null}
      </div>
      <div className="bar" role="meter" aria-label="expected wait against the delay bound" aria-valuemin={0} aria-valuemax={adm.delay_bound_ms} aria-valuenow={adm.expected_delay_ms}>
        <div className={'bar-use' + (adm.expected_delay_ms > adm.delay_bound_ms ? ' over' : '')} style={{ width: pct(adm.expected_delay_ms, adm.delay_bound_ms) + '%' }} />
      </div>
      <div className="muted">
        {measured ? (
          <>
            queue {num(depth)} of {num(adm.max_queue)} records admitted, drained at {num(adm.drain_rps)}/s
          </>
        ) : (
          <>no write measured yet: only the queue's hard bounds hold</>
        )}
      </div>
      {cpuAllowance || adm.pressure ? (
        <div data-testid="admission-pressure">
          {adm.pressure ? (
            <>
              <span className="badge badge-dead">{adm.pressure} pressure</span> refusing every new request:{' '}
              {adm.pressure_detail ?? WHY[adm.pressure] ?? adm.pressure}
            </>
          ) : (
            <span className="muted">no resource pressure</span>
          )}
          {cpuAllowance ? <div className="muted">limit that acts: {cpuLimitText(cpuAllowance, cpuPercent)}</div> : null}
        </div>
      ) : null}
      <div data-testid="admission-refused">
        {adm.refused > 0 ? (
          <>
            <span className="badge badge-suspect">refused {num(adm.refused)}</span> in the last interval:{' '}
            {refusedBy.map(([why, n], i) => (
              <span key={why} title={WHY[why] ?? why}>
                {i > 0 ? ', ' : ''}
                {num(n)} {why} ({WHY[why] ?? why})
              </span>
            ))}
          </>
        ) : (
          <span className="muted">nothing refused in the last interval</span>
        )}
        {adm.graced ? (
          <div className="muted" data-testid="admission-graced">
            {num(adm.graced)} records let past the delay bound on its grace (the first request past it after a calm
            interval; the node decided early on it)
          </div>
        ) : null}
      </div>
    </div>
  );
}

export interface AdmissionProps {
  /** The node shown: the member picked out, else the node that served the page. */
  node: string | null;
  sloMs?: number;
  stale: boolean;
  fetchNode?: (name: string, signal?: AbortSignal) => Promise<NodeView>;
  every?: number;
}

export function Admission({ node, sloMs, stale, fetchNode = getNode, every = 2000 }: AdmissionProps) {
  const [view, setView] = useState<NodeView | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    setView(null);
    setError('');
    if (!node) return;
    const ctl = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const load = () => {
      fetchNode(node, ctl.signal)
        .then((v) => {
          setView(v);
          setError('');
        })
        .catch((e: unknown) => {
          if (!ctl.signal.aborted) setError(e instanceof Error ? e.message : String(e));
        })
        .finally(() => {
          if (!ctl.signal.aborted) timer = setTimeout(load, every);
        });
    };
    load();
    return () => {
      ctl.abort();
      if (timer) clearTimeout(timer);
    };
  }, [node, fetchNode, every]);

  if (!node) return null;
  const adm = view?.health.admission;
  return (
    <section className={'panel' + (stale ? ' stale' : '')} aria-label="admission">
      <div className="panel-head">
        <h2>Admission</h2>
        <span className="muted">what {node} admits: only what it can write within its latency budget</span>
      </div>
      {adm ? (
        <AdmissionView
          name={node}
          adm={adm}
          depth={view.health.queue_depth}
          sloMs={sloMs}
          cpuAllowance={view.health.cpu_allowance}
          cpuPercent={view.health.cpu_percent}
        />
      ) : (
        <div className="muted">{error ? `cannot read ${node}: ${error}` : 'reading…'}</div>
      )}
    </section>
  );
}
