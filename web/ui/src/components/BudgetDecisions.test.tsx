import { render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { BudgetDecision, BudgetDecisionsAnswer } from '../api';
import { BudgetDecisions } from './BudgetDecisions';

function decision(reason: string, old: number, next: number, sec: number): BudgetDecision {
  return {
    time: `2026-01-01T10:00:${String(sec).padStart(2, '0')}Z`,
    old_bytes: old,
    new_bytes: next,
    ceiling_bytes: 256 << 20,
    floor_bytes: 8 << 20,
    reason,
    figures: { nodes: 3, want_bytes: 0, has_bytes: 0, goodput_rps: 1200, pushback_per_s: 2.5, too_large_per_s: 0, writes_per_s: 40, p99_ms: 310, slo_ms: 500 },
  };
}

function answer(mode: 'learned' | 'fixed', decisions: BudgetDecision[]): BudgetDecisionsAnswer {
  return { leader: { id: 'a', name: 'node-1', http_addr: '' }, budget_mode: mode, budget_bytes: 32 << 20, ceiling_bytes: 256 << 20, decisions };
}

describe('BudgetDecisions', () => {
  it('shows the learned budget against its ceiling and each decision with its reason and figures', () => {
    const { container } = render(
      <BudgetDecisions answer={answer('learned', [decision('pushback', 46 << 20, 32 << 20, 4), decision('grow', 41 << 20, 46 << 20, 2)])} />,
    );
    expect(screen.getByTestId('budget-mode').textContent).toContain('learned 32.0 MiB of 256 MiB ceiling');
    const rows = container.querySelectorAll('tbody tr');
    expect([...rows].map((r) => r.getAttribute('data-reason'))).toEqual(['pushback', 'grow']);
    expect(rows[0].textContent).toContain('46.0 MiB → 32.0 MiB');
    expect(rows[0].textContent).toContain('2.5/s');
    expect(rows[0].textContent).toContain('310 ms');
  });

  it('says when the budget is fixed and when nothing was decided yet', () => {
    render(<BudgetDecisions answer={answer('fixed', [])} />);
    expect(screen.getByTestId('budget-mode').textContent).toContain('fixed at 32.0 MiB');
    expect(screen.getByText('No budget decision yet.')).toBeTruthy();
  });
});
