import { render, screen, waitFor } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import type { NodeView } from '../api';
import { Admission, AdmissionView } from './Admission';

const overloaded = {
  delay_bound_ms: 250,
  expected_delay_ms: 180,
  drain_rps: 6900,
  max_queue: 1725,
  refused: 203,
  refused_by: { delay: 200, sojourn: 3 },
  why: 'delay',
};

describe('Admission', () => {
  it('shows the bound, the expected wait, and what was refused and why', () => {
    render(<AdmissionView name="node-1" adm={overloaded} depth={1200} sloMs={500} />);
    const text = screen.getByTestId('admission').textContent ?? '';
    expect(text).toContain('expected wait 180 ms of a 250 ms delay bound (SLO 500 ms)');
    expect(text).toContain('queue 1200 of 1725 records admitted, drained at 6900/s');
    const refused = screen.getByTestId('admission-refused').textContent ?? '';
    expect(refused).toContain('refused 203');
    expect(refused).toContain('200 delay (the expected wait (queue / drain rate) would pass the bound)');
    expect(refused).toContain('3 sojourn');
  });

  it('shows the pressure, the limit that acts and the refusals it causes', () => {
    const hot = {
      ...overloaded,
      refused: 40,
      refused_by: { cpu: 40 },
      why: 'cpu',
      pressure: 'cpu',
      pressure_detail: 'cpu 95% of cgroup-v2: 1.50 cores (/sys/fs/cgroup/app/cpu.max) > 90%',
    };
    const quota = { cores: 1.5, source: 'cgroup-v2', file: '/sys/fs/cgroup/app/cpu.max' };
    render(<AdmissionView name="node-1" adm={hot} depth={0} cpuAllowance={quota} cpuPercent={95} />);
    const pressure = screen.getByTestId('admission-pressure').textContent ?? '';
    expect(pressure).toContain('cpu pressure refusing every new request: cpu 95% of cgroup-v2: 1.50 cores');
    expect(pressure).toContain('limit that acts: CPU 95% of 1.50 cores (cgroup-v2 quota: /sys/fs/cgroup/app/cpu.max)');
    expect(screen.getByTestId('admission-refused').textContent).toContain('40 cpu (the node is over its CPU limit');
  });

  it("names the host's CPUs as the limit when no quota acts, and no pressure", () => {
    render(<AdmissionView name="node-1" adm={overloaded} depth={0} cpuAllowance={{ cores: 2, source: 'host' }} cpuPercent={30} />);
    const pressure = screen.getByTestId('admission-pressure').textContent ?? '';
    expect(pressure).toContain('no resource pressure');
    expect(pressure).toContain("limit that acts: CPU 30% of 2.00 cores (the host's CPUs)");
  });

  it('shows a request let past the delay bound on its grace', () => {
    render(<AdmissionView name="node-1" adm={{ ...overloaded, refused: 0, refused_by: {}, graced: 10 }} depth={20} />);
    expect(screen.getByTestId('admission-graced').textContent).toContain('10 records let past the delay bound on its grace');
    expect(screen.getByTestId('admission-refused').textContent).toContain('nothing refused');
  });

  it('says when nothing was refused and when nothing is measured yet', () => {
    render(<AdmissionView name="node-1" adm={{ delay_bound_ms: 0, expected_delay_ms: 0, drain_rps: 0, max_queue: 0, refused: 0 }} depth={0} />);
    expect(screen.getByTestId('admission').textContent).toContain('only the queue\'s hard bounds hold');
    expect(screen.getByTestId('admission-refused').textContent).toContain('nothing refused');
  });

  it('reads the node it is given and shows an error it cannot read', async () => {
    const asked: string[] = [];
    const fetchNode = async (name: string): Promise<NodeView> => {
      asked.push(name);
      if (name === 'gone') throw new Error('node "gone" is dead');
      return { name, health: { queue_depth: 7, p99_ms: 120, admission: overloaded } };
    };
    const { rerender } = render(<Admission node="node-2" stale={false} fetchNode={fetchNode} every={60000} />);
    await waitFor(() => expect(screen.getByTestId('admission').textContent).toContain('node-2: expected wait 180 ms'));
    rerender(<Admission node="gone" stale={false} fetchNode={fetchNode} every={60000} />);
    await waitFor(() => expect(screen.getByText(/cannot read gone: node "gone" is dead/)).toBeTruthy());
    expect(asked).toEqual(['node-2', 'gone']);
  });
});
