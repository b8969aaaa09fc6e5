// The tuners' decisions, newest first, with the reason and the figures
// behind each, filterable by node.

import { useMemo, useState } from 'react';
import type { Decision } from '../api';
import { clock, num } from '../format';

export interface DecisionLogProps {
  decisions: Decision[];
  nodes: string[];
  /** Rows shown at most. */
  max?: number;
}

export function DecisionLog({ decisions, nodes, max = 200 }: DecisionLogProps) {
  const [node, setNode] = useState('');
  const shown = useMemo(
    () => (node ? decisions.filter((d) => d.node === node) : decisions).slice(0, max),
    [decisions, node, max],
  );
  return (
    <section className="panel" aria-label="decisions">
      <div className="panel-head">
        <h2>Decisions</h2>
        <label>
          Node{' '}
          <select aria-label="filter by node" value={node} onChange={(e) => setNode(e.target.value)}>
            <option value="">all nodes</option>
            {nodes.map((n) => (
              <option key={n} value={n}>
                {n}
              </option>
            ))}
          </select>
        </label>
      </div>
      {shown.length === 0 ? (
        <p className="muted">No decisions yet{node ? ` on ${node}` : ''}.</p>
      ) : (
        <div className="table-scroll tall">
          <table className="decisions">
            <thead>
              <tr>
                <th>Time</th>
                <th>Node</th>
                <th className="num">Batch size</th>
                <th>Reason</th>
                <th className="num">Arrival/s</th>
                <th className="num">Records/s</th>
                <th className="num">p99 ms</th>
                <th className="num" title="what a write took at the old size → what the controller expects at the new one">
                  Write ms
                </th>
                <th className="num">CPU %</th>
                <th className="num">Queue</th>
                <th>Breaker</th>
                <th>Controller</th>
              </tr>
            </thead>
            <tbody>
              {shown.map((d) => (
                <tr key={d.node + d.time} data-node={d.node}>
                  <td className="mono" title={d.time}>
                    {clock(d.time)}
                  </td>
                  <td>{d.node}</td>
                  <td className="num">
                    {num(d.old_size)} → <b className={d.new_size > d.old_size ? 'up' : 'down'}>{num(d.new_size)}</b>
                    {d.flush_limit ? <span className="flush"> · {d.flush_limit} at once</span> : null}
                  </td>
                  <td className="reason">{d.reason}</td>
                  <td className="num">{num(d.arrival_rps)}</td>
                  <td className="num">{num(d.throughput_rps)}</td>
                  <td className="num">{num(d.p99_ms, 1)}</td>
                  <td className="num">{writes(d)}</td>
                  <td className="num">{num(d.cpu_percent, 1)}</td>
                  <td className="num">{num(d.queue_depth)}</td>
                  <td>{d.breaker}</td>
                  <td>{d.controller}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}

/** The write measured at the old size and the one expected at the new size: "230 → 290", "230", "→ 290" or "". */
export function writes(d: Decision): string {
  const was = d.write_ms ? num(d.write_ms) : '';
  const next = d.expected_write_ms ? num(d.expected_write_ms) : '';
  if (was && next) return `${was} → ${next}`;
  return was || (next ? `→ ${next}` : '');
}

/** Merges new decisions into a newest-first list without duplicates, keeping at most cap. */
export function mergeDecisions(list: Decision[], add: Decision[], cap = 1000): Decision[] {
  const seen = new Set(list.map((d) => d.node + '|' + d.time));
  const fresh = add.filter((d) => {
    const k = d.node + '|' + d.time;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
  if (fresh.length === 0) return list;
  const all = [...fresh, ...list];
  all.sort((a, b) => (a.time < b.time ? 1 : a.time > b.time ? -1 : a.node.localeCompare(b.node)));
  return all.slice(0, cap);
}
