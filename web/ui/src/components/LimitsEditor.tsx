// The limits editor: change some of the cluster-wide limits with the API
// token. Only the fields that differ from the limits in force are sent; the
// answer (the limits as committed by the leader) or the error is shown. A
// 503 means the outcome is unknown: "Send again" retries with the same
// request id, which the cluster applies at most once.

import { useState, type FormEvent } from 'react';
import { APIError, LIMIT_KEYS, newRequestID, putLimits, type Limits } from '../api';

export interface LimitsEditorProps {
  limits: Limits | null;
  /** Sends the change; the API call by default. */
  send?: (patch: Partial<Limits>, token: string, requestID: string) => Promise<Limits>;
}

const labels: Record<keyof Limits, string> = {
  max_batch_size: 'Max batch size (records)',
  slo_ms: 'Latency SLO, p99 (ms)',
  cpu_limit_percent: 'CPU limit (%)',
  mem_limit_percent: 'Memory limit (%)',
  cluster_budget_bytes: 'Cluster budget (bytes)',
  node_floor_bytes: 'Node floor (bytes)',
  max_growth_percent: 'Max growth per epoch (%)',
  max_growing_nodes: 'Max growing nodes per epoch',
  epoch_ms: 'Budget epoch (ms)',
  lease_ttl_ms: 'Lease TTL (ms)',
};

type Outcome =
  | { kind: 'idle' }
  | { kind: 'sending' }
  | { kind: 'ok'; limits: Limits; changed: (keyof Limits)[] }
  | { kind: 'error'; status: number; message: string; retry?: { patch: Partial<Limits>; id: string } };

export function LimitsEditor({ limits, send = putLimits }: LimitsEditorProps) {
  const [edits, setEdits] = useState<Partial<Record<keyof Limits, string>>>({});
  const [token, setToken] = useState('');
  const [outcome, setOutcome] = useState<Outcome>({ kind: 'idle' });

  const value = (k: keyof Limits) => edits[k] ?? (limits ? String(limits[k]) : '');

  const patchOf = (): { patch: Partial<Limits>; bad: string[] } => {
    const patch: Partial<Limits> = {};
    const bad: string[] = [];
    for (const k of LIMIT_KEYS) {
      const s = edits[k];
      if (s === undefined || !limits) continue;
      const v = Number(s.trim());
      if (s.trim() === '' || !Number.isFinite(v)) {
        bad.push(k);
        continue;
      }
      if (v !== limits[k]) patch[k] = v;
    }
    return { patch, bad };
  };

  const submit = async (patch: Partial<Limits>, id: string) => {
    setOutcome({ kind: 'sending' });
    try {
      const committed = await send(patch, token, id);
      setOutcome({ kind: 'ok', limits: committed, changed: Object.keys(patch) as (keyof Limits)[] });
      setEdits({});
    } catch (err) {
      if (err instanceof APIError) {
        setOutcome({
          kind: 'error',
          status: err.status,
          message: err.message,
          retry: err.status === 503 ? { patch, id } : undefined,
        });
      } else {
        setOutcome({
          kind: 'error',
          status: 0,
          message: 'the node did not answer: ' + String(err instanceof Error ? err.message : err),
          retry: { patch, id },
        });
      }
    }
  };

  const onSubmit = (e: FormEvent) => {
    e.preventDefault();
    const { patch, bad } = patchOf();
    if (bad.length) {
      setOutcome({ kind: 'error', status: -1, message: `not a number: ${bad.join(', ')}` });
      return;
    }
    if (Object.keys(patch).length === 0) {
      setOutcome({ kind: 'error', status: -1, message: 'nothing to change: edit a value first' });
      return;
    }
    void submit(patch, newRequestID());
  };

  return (
    <section className="panel" aria-label="limits">
      <h2>Limits</h2>
      <form className="limits" onSubmit={onSubmit}>
        <div className="limits-grid">
          {LIMIT_KEYS.map((k) => (
            <label key={k} className={edits[k] !== undefined && limits && edits[k] !== String(limits[k]) ? 'edited' : ''}>
              <span>{labels[k]}</span>
              <input
                name={k}
                inputMode="decimal"
                value={value(k)}
                disabled={!limits}
                onChange={(e) => setEdits({ ...edits, [k]: e.target.value })}
              />
            </label>
          ))}
        </div>
        <div className="limits-actions">
          <label>
            <span>API token</span>
            <input
              name="token"
              type="password"
              autoComplete="off"
              value={token}
              placeholder="when the cluster has one"
              onChange={(e) => setToken(e.target.value)}
            />
          </label>
          <button type="submit" disabled={!limits || outcome.kind === 'sending'}>
            {outcome.kind === 'sending' ? 'Committing…' : 'Apply'}
          </button>
          <button type="button" className="secondary" onClick={() => (setEdits({}), setOutcome({ kind: 'idle' }))}>
            Reset
          </button>
        </div>
      </form>
      <Result outcome={outcome} onRetry={(r) => void submit(r.patch, r.id)} />
    </section>
  );
}

function Result({ outcome, onRetry }: { outcome: Outcome; onRetry: (r: { patch: Partial<Limits>; id: string }) => void }) {
  switch (outcome.kind) {
    case 'ok':
      return (
        <div className="result ok" role="status" data-testid="limits-result">
          Committed:{' '}
          {outcome.changed.map((k, i) => (
            <span key={k}>
              {i > 0 && ', '}
              <code>
                {k} = {outcome.limits[k]}
              </code>
            </span>
          ))}
        </div>
      );
    case 'error': {
      const what =
        outcome.status === -1
          ? 'Check the form'
          : outcome.status === 401 || outcome.status === 403
          ? 'Not allowed'
          : outcome.status === 400
            ? 'Refused'
            : outcome.status === 503 || outcome.status === 0
              ? 'Outcome unknown'
              : 'Failed';
      return (
        <div className="result error" role="alert" data-testid="limits-result">
          {what}
          {outcome.status > 0 ? ` (${outcome.status})` : ''}: {outcome.message}
          {outcome.retry && (
            <button type="button" className="secondary" onClick={() => onRetry(outcome.retry!)}>
              Send again
            </button>
          )}
        </div>
      );
    }
    default:
      return null;
  }
}
