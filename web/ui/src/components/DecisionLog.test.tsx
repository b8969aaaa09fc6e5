import { fireEvent, render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { decision } from '../testdata';
import { DecisionLog, mergeDecisions, writes } from './DecisionLog';

describe('DecisionLog', () => {
  const list = mergeDecisions([], [decision('node-1', 1), decision('node-2', 3, { reason: 'shrink:p99', new_size: 80 }), decision('node-1', 2)]);

  it('lists decisions newest first with their reason', () => {
    const { container } = render(<DecisionLog decisions={list} nodes={['node-1', 'node-2']} />);
    const rows = container.querySelectorAll('tbody tr');
    expect([...rows].map((r) => r.getAttribute('data-node'))).toEqual(['node-2', 'node-1', 'node-1']);
    expect(rows[0].textContent).toContain('shrink:p99');
    expect(rows[0].textContent).toContain('100 → 80');
  });

  it('shows a change of the flushes in flight beside the size', () => {
    const flows = [decision('node-1', 4, { controller: 'arc', reason: 'arc:increase', flush_limit: 3 }), decision('node-1', 5)];
    const { container } = render(<DecisionLog decisions={flows} nodes={['node-1']} />);
    const rows = container.querySelectorAll('tbody tr');
    expect(rows[0].textContent).toContain('3 at once');
    expect(rows[1].textContent).not.toContain('at once');
  });

  it('shows the write measured at the old size and the one expected at the new size', () => {
    const ds = [
      decision('node-1', 6, { write_ms: 230.4, expected_write_ms: 289.6 }),
      decision('node-1', 5, { write_ms: 41 }),
      decision('node-1', 4, { expected_write_ms: 12 }),
      decision('node-1', 3),
    ];
    expect(ds.map(writes)).toEqual(['230 → 290', '41', '→ 12', '']);
    const { container } = render(<DecisionLog decisions={ds} nodes={['node-1']} />);
    expect(container.querySelectorAll('tbody tr')[0].textContent).toContain('230 → 290');
  });

  it('filters by node', () => {
    const { container } = render(<DecisionLog decisions={list} nodes={['node-1', 'node-2', 'node-3']} />);
    fireEvent.change(screen.getByLabelText('filter by node'), { target: { value: 'node-1' } });
    const rows = container.querySelectorAll('tbody tr');
    expect(rows).toHaveLength(2);
    rows.forEach((r) => expect(r.getAttribute('data-node')).toBe('node-1'));
    fireEvent.change(screen.getByLabelText('filter by node'), { target: { value: 'node-3' } });
    expect(screen.getByText(/No decisions yet on node-3/)).toBeTruthy();
  });

  it('merges without duplicates and keeps at most the cap', () => {
    const merged = mergeDecisions(list, [decision('node-1', 2), decision('node-3', 9)], 3);
    expect(merged.map((d) => d.node + '@' + d.time.slice(17, 19))).toEqual(['node-3@09', 'node-2@03', 'node-1@02']);
    expect(mergeDecisions(merged, [])).toBe(merged);
  });
});
