import { render } from '@testing-library/react';
import { beforeEach, describe, expect, it, vi } from 'vitest';
import { SeriesStore } from '../series';
import { member, snapshot, threeNodes } from '../testdata';
import { Chart } from './Chart';

const plots: { opts: { series: { label?: string }[] }; data: unknown[]; setData: ReturnType<typeof vi.fn>; destroy: ReturnType<typeof vi.fn> }[] = [];

vi.mock('uplot', () => {
  class FakePlot {
    setData = vi.fn();
    destroy = vi.fn();
    setSize = vi.fn();
    constructor(
      public opts: { series: { label?: string }[] },
      public data: unknown[],
    ) {
      plots.push(this as never);
    }
    static pxRatio = 1;
  }
  return { default: FakePlot };
});

describe('Chart', () => {
  beforeEach(() => {
    plots.length = 0;
  });

  it('draws one series per node and redraws in place on new points', () => {
    const store = new SeriesStore();
    store.push(snapshot(1, threeNodes()));
    const { rerender, container } = render(<Chart title="Batch size" metric="batch_size" store={store} version={store.version} />);
    expect(plots).toHaveLength(1);
    expect(plots[0].opts.series.slice(1).map((s) => s.label)).toEqual(['node-1', 'node-2', 'node-3']);
    store.push(snapshot(2, threeNodes()));
    rerender(<Chart title="Batch size" metric="batch_size" store={store} version={store.version} />);
    expect(plots).toHaveLength(1);
    expect(plots[0].setData).toHaveBeenCalledWith(store.data('batch_size'));
    expect(container.querySelector('figure')!.getAttribute('data-points')).toBe('2');
  });

  it('rebuilds when a node joins and shows the limit', () => {
    const store = new SeriesStore();
    store.push(snapshot(1, [member('node-1')]));
    const { rerender, getByText } = render(<Chart title="p99" metric="p99_ms" store={store} version={store.version} limit={500} limitLabel="SLO" />);
    store.push(snapshot(2, threeNodes()));
    rerender(<Chart title="p99" metric="p99_ms" store={store} version={store.version} limit={500} limitLabel="SLO" />);
    expect(plots).toHaveLength(2);
    expect(plots[0].destroy).toHaveBeenCalled();
    expect(getByText(/SLO 500/)).toBeTruthy();
  });

  it('destroys the plot when unmounted', () => {
    const store = new SeriesStore();
    store.push(snapshot(1, threeNodes()));
    const { unmount } = render(<Chart title="CPU" metric="cpu_percent" store={store} version={store.version} />);
    unmount();
    expect(plots[0].destroy).toHaveBeenCalled();
  });
});

describe('Chart with a node picked out', () => {
  beforeEach(() => {
    plots.length = 0;
  });

  it('draws the picked node bold and fades the others', () => {
    const store = new SeriesStore();
    store.push(snapshot(1, threeNodes()));
    const { rerender } = render(<Chart title="Batch" metric="batch_size" store={store} version={store.version} />);
    rerender(<Chart title="Batch" metric="batch_size" store={store} version={store.version} focus="node-2" />);
    expect(plots).toHaveLength(2);
    const series = plots[1].opts.series as { label?: string; width?: number; stroke?: string }[];
    expect(series[2].width).toBe(2.5);
    expect(series[1].stroke).toMatch(/\/ 0\.18\)$/);
    expect(series[2].stroke).not.toMatch(/\//);
  });
});
