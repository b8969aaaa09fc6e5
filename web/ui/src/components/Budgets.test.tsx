import { render, screen } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { cluster, member, threeNodes } from '../testdata';
import { Budgets } from './Budgets';

describe('Budgets', () => {
  it('shows the cluster total against the budget and each grant against its use', () => {
    const { container } = render(<Budgets cluster={cluster(threeNodes())} stale={false} />);
    expect(screen.getByTestId('budget-total').textContent).toContain('granted 12.0 MiB of 256 MiB budget; in use 6.0 MiB');
    const rows = container.querySelectorAll('tbody tr');
    expect(rows).toHaveLength(3);
    expect(rows[0].textContent).toContain('2.0 MiB');
    expect(rows[0].textContent).toContain('4.0 MiB');
    expect(rows[0].textContent).toContain('8.0 MiB');
  });

  it('marks a node above its grant and the learning mode', () => {
    const over = member('node-1', { budget: { grant_bytes: 1 << 20, has_bytes: 3 << 20, want_bytes: 3 << 20 } });
    const { container } = render(<Budgets cluster={cluster([over], { learning: true })} stale={false} />);
    expect(container.querySelector('.bar-use.over')).toBeTruthy();
    expect(screen.getByText(/learning/)).toBeTruthy();
  });

  it('leaves out members that left', () => {
    const { container } = render(<Budgets cluster={cluster([member('node-1'), member('node-2', { status: 'left' })])} stale={false} />);
    expect(container.querySelectorAll('tbody tr')).toHaveLength(1);
  });
});
