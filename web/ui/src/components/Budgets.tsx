// Budgets: each node's grant against what it uses and wants, and the
// cluster's total grants against the cluster budget.

import type { Cluster } from '../api';
import { bytes } from '../format';

function pct(v: number, of: number): number {
  if (!(of > 0)) return 0;
  return Math.max(0, Math.min(100, (v / of) * 100));
}

export function Budgets({ cluster, stale }: { cluster: Cluster | null; stale: boolean }) {
  if (!cluster) return null;
  const members = cluster.members.filter((m) => m.status !== 'left');
  const used = members.reduce((s, m) => s + (m.budget.has_bytes || 0), 0);
  const budget = cluster.budget_bytes || cluster.limits.cluster_budget_bytes;
  const scale = Math.max(1, ...members.map((m) => Math.max(m.budget.grant_bytes, m.budget.has_bytes, m.budget.want_bytes)));
  return (
    <section className={'panel' + (stale ? ' stale' : '')} aria-label="budgets">
      <div className="panel-head">
        <h2>Budgets</h2>
        <span className="muted">
          epoch {cluster.epoch}
          {cluster.learning && <span className="badge badge-suspect"> learning</span>}
        </span>
      </div>
      <div className="budget-total" data-testid="budget-total">
        <div className="bar-label">
          Cluster: granted <b>{bytes(cluster.granted_bytes)}</b> of {bytes(budget)} budget
          {cluster.budget_mode === 'learned' && cluster.ceiling_bytes ? ` (learned; ceiling ${bytes(cluster.ceiling_bytes)})` : ''}; in use {bytes(used)}
        </div>
        <div className="bar" role="meter" aria-valuemin={0} aria-valuemax={budget} aria-valuenow={cluster.granted_bytes}>
          <div className="bar-grant" style={{ width: pct(cluster.granted_bytes, budget) + '%' }} />
          <div className="bar-use" style={{ width: pct(used, budget) + '%' }} />
        </div>
      </div>
      <div className="table-scroll">
        <table className="budgets">
          <thead>
            <tr>
              <th>Node</th>
              <th className="bar-col">in use / grant (▏want)</th>
              <th className="num">In use</th>
              <th className="num">Grant</th>
              <th className="num">Want</th>
            </tr>
          </thead>
          <tbody>
            {members.map((m) => {
              const b = m.budget;
              const over = b.grant_bytes > 0 && b.has_bytes > b.grant_bytes;
              return (
                <tr key={m.id || m.name} data-node={m.name}>
                  <td>{m.name || m.id.slice(0, 8)}</td>
                  <td className="bar-col">
                    <div className="bar small">
                      <div className="bar-grant" style={{ width: pct(b.grant_bytes, scale) + '%' }} />
                      <div className={'bar-use' + (over ? ' over' : '')} style={{ width: pct(b.has_bytes, scale) + '%' }} />
                      <div className="bar-want" style={{ left: pct(b.want_bytes, scale) + '%' }} />
                    </div>
                  </td>
                  <td className="num">{bytes(b.has_bytes)}</td>
                  <td className="num">{bytes(b.grant_bytes)}</td>
                  <td className="num">{bytes(b.want_bytes)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      </div>
    </section>
  );
}
