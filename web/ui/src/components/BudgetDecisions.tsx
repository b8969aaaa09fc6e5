// BudgetDecisions: the leader's cluster budget, learned against its ceiling,
// and its recent decisions with the reason and the figures behind each.

import type { BudgetDecisionsAnswer } from '../api';
import { bytes, clock, num } from '../format';

export function BudgetDecisions({ answer }: { answer: BudgetDecisionsAnswer | null }) {
  if (!answer) return null;
  const learned = answer.budget_mode !== 'fixed';
  return (
    <section className="panel" aria-label="budget decisions">
      <div className="panel-head">
        <h2>Cluster budget</h2>
        <span className="muted" data-testid="budget-mode">
          {learned
            ? `learned ${bytes(answer.budget_bytes)} of ${bytes(answer.ceiling_bytes)} ceiling`
            : `fixed at ${bytes(answer.budget_bytes)}`}
          {answer.leader.name && ` · decided by ${answer.leader.name}`}
        </span>
      </div>
      {answer.decisions.length === 0 ? (
        <p className="muted">No budget decision yet.</p>
      ) : (
        <div className="table-scroll">
          <table className="budget-decisions">
            <thead>
              <tr>
                <th>Time</th>
                <th>Reason</th>
                <th className="num">Budget</th>
                <th className="num">Goodput</th>
                <th className="num">Pushback</th>
                <th className="num">p99</th>
              </tr>
            </thead>
            <tbody>
              {answer.decisions.map((d) => (
                <tr key={d.time + d.reason} data-reason={d.reason}>
                  <td>{clock(d.time)}</td>
                  <td>{d.reason}</td>
                  <td className="num">
                    {bytes(d.old_bytes)} → {bytes(d.new_bytes)}
                  </td>
                  <td className="num">{num(d.figures.goodput_rps)}/s</td>
                  <td className="num">{num(d.figures.pushback_per_s, 1)}/s</td>
                  <td className="num">{num(d.figures.p99_ms)} ms</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </section>
  );
}
