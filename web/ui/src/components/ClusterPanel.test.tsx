import { fireEvent, render, screen, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { cluster, member, threeNodes } from '../testdata';
import { ClusterPanel } from './ClusterPanel';

const colorOf = (name: string) => Number(name.slice(-1)) - 1;

describe('ClusterPanel', () => {
  it('shows the leader, the term and every member with status, role and breaker', () => {
    render(<ClusterPanel cluster={cluster(threeNodes())} stale={false} colorOf={colorOf} servedBy="node-2" />);
    expect(screen.getByTestId('leader').textContent).toBe('node-1');
    expect(screen.getByTestId('term').textContent).toBe('3');
    expect(screen.getByTestId('member-count').textContent).toBe('3 alive of 3');
    const rows = screen.getAllByRole('row').slice(1);
    expect(rows).toHaveLength(3);
    const first = within(rows[0]);
    expect(first.getByText('node-1')).toBeTruthy();
    expect(first.getByText('alive')).toBeTruthy();
    expect(first.getByTestId('role').textContent).toBe('server · leader');
    expect(first.getByText('closed')).toBeTruthy();
  });

  it('tells servers from workers', () => {
    const nodes = [
      member('node-1', { raft_role: 'leader', role: 'server' }),
      member('node-2', { role: 'server' }),
      member('node-4', { raft_role: 'none', role: 'worker' }),
    ];
    const { container } = render(<ClusterPanel cluster={cluster(nodes)} stale={false} colorOf={colorOf} />);
    expect(screen.getByTestId('role-count').textContent).toBe('2 servers, 1 worker');
    const worker = container.querySelector('tr[data-node="node-4"]') as HTMLElement;
    expect(within(worker).getByTestId('role').textContent).toBe('worker');
  });

  it('marks a dead member as failed and hides its stale figures', () => {
    const nodes = threeNodes();
    nodes[2] = member('node-3', { status: 'dead', raft_role: 'voter' });
    const { container } = render(<ClusterPanel cluster={cluster(nodes)} stale={false} colorOf={colorOf} />);
    const row = container.querySelector('tr[data-node="node-3"]')!;
    expect(row.getAttribute('data-status')).toBe('dead');
    expect(within(row as HTMLElement).getByText('failed')).toBeTruthy();
    expect(row.textContent).not.toContain('120.0');
    expect(screen.getByTestId('member-count').textContent).toBe('2 alive of 3');
  });

  it('shows an open breaker and a p99 over the SLO', () => {
    const nodes = [member('node-1', { raft_role: 'leader', health: { ...member('x').health, breaker: 'open', p99_ms: 800 } })];
    const { container } = render(<ClusterPanel cluster={cluster(nodes)} stale={false} colorOf={colorOf} />);
    expect(container.querySelector('.breaker-open')?.textContent).toBe('open');
    expect(container.querySelector('td.over')?.textContent).toBe('800.0');
  });

  it('says when there is no leader', () => {
    render(<ClusterPanel cluster={cluster([member('node-1')])} stale={false} colorOf={colorOf} />);
    expect(screen.getByTestId('leader').textContent).toMatch(/none/);
  });

  it('is marked stale', () => {
    const { container } = render(<ClusterPanel cluster={cluster(threeNodes())} stale colorOf={colorOf} />);
    expect(container.querySelector('section')!.className).toContain('stale');
  });

  it('waits for the first snapshot', () => {
    render(<ClusterPanel cluster={null} stale={false} colorOf={colorOf} />);
    expect(screen.getByText(/Waiting/)).toBeTruthy();
  });
});

describe('ClusterPanel picking', () => {
  it('picks a node out by its row and picks it again to clear', () => {
    const picks: (string | null)[] = [];
    const { container, rerender } = render(
      <ClusterPanel cluster={cluster(threeNodes())} stale={false} colorOf={colorOf} onFocus={(n) => picks.push(n)} />,
    );
    fireEvent.click(container.querySelector('tr[data-node="node-2"]')!);
    rerender(<ClusterPanel cluster={cluster(threeNodes())} stale={false} colorOf={colorOf} focus="node-2" onFocus={(n) => picks.push(n)} />);
    expect(container.querySelector('tr.picked')!.getAttribute('data-node')).toBe('node-2');
    fireEvent.click(container.querySelector('tr[data-node="node-2"]')!);
    expect(picks).toEqual(['node-2', null]);
  });
});
