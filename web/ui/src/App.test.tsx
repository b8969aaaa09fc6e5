import { act, render, screen, waitFor } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { App } from './App';
import { decision, FakeEventSource, member, snapshot, threeNodes } from './testdata';

vi.mock('uplot', () => {
  class FakePlot {
    setData = vi.fn();
    destroy = vi.fn();
    setSize = vi.fn();
    static pxRatio = 1;
  }
  return { default: FakePlot };
});

describe('App', () => {
  beforeEach(() => {
    FakeEventSource.all = [];
  });

  it('shows the cluster, past and live decisions, and a failed member', async () => {
    const fetchDecisions = vi.fn(async () => [decision('node-2', 1)]);
    const fetchBudgetDecisions = vi.fn(async () => ({
      leader: { id: 'a', name: 'node-1', http_addr: '' },
      budget_mode: 'learned' as const,
      budget_bytes: 32 << 20,
      ceiling_bytes: 256 << 20,
      decisions: [],
    }));
    const { container } = render(
      <App eventSource={(u) => new FakeEventSource(u)} fetchDecisions={fetchDecisions} fetchBudgetDecisions={fetchBudgetDecisions} />,
    );
    const es = FakeEventSource.all[0];
    expect(es.url).toBe('/api/v1/events');
    act(() => es.emit('snapshot', snapshot(100, threeNodes())));
    expect(screen.getByTestId('leader').textContent).toBe('node-1');
    await waitFor(() => expect(container.querySelectorAll('table.decisions tbody tr')).toHaveLength(1));
    expect(fetchDecisions).toHaveBeenCalledTimes(1);
    await waitFor(() => expect(screen.getByTestId('budget-mode').textContent).toContain('learned 32.0 MiB of 256 MiB ceiling'));

    act(() => es.emit('decision', decision('node-3', 5, { reason: 'shrink:p99' })));
    const nodes = threeNodes();
    nodes[2] = member('node-3', { status: 'dead' });
    act(() => es.emit('snapshot', snapshot(101, nodes)));
    const rows = container.querySelectorAll('table.decisions tbody tr');
    expect(rows).toHaveLength(2);
    expect(rows[0].textContent).toContain('shrink:p99');
    expect(container.querySelector('tr[data-node="node-3"][data-status="dead"]')).toBeTruthy();
    expect(container.querySelector('[data-connection="live"]')).toBeTruthy();
  });
});
