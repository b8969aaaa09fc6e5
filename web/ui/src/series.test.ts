import { describe, expect, it } from 'vitest';
import { SeriesStore } from './series';
import { member, snapshot, threeNodes } from './testdata';

describe('SeriesStore', () => {
  it('keeps one column per node in order of first appearance', () => {
    const s = new SeriesStore();
    s.push(snapshot(100, threeNodes()));
    expect(s.nodes).toEqual(['node-1', 'node-2', 'node-3']);
    const [times, ...cols] = s.data('batch_size');
    expect(times).toEqual([100]);
    expect(cols).toEqual([[100], [100], [100]]);
  });

  it('gives a node that joins later nulls for the past', () => {
    const s = new SeriesStore();
    s.push(snapshot(100, [member('node-1')]));
    s.push(snapshot(101, [member('node-1'), member('node-2', { health: { ...member('x').health, p99_ms: 900 } })]));
    expect(s.data('p99_ms')).toEqual([[100, 101], [120, 120], [null, 900]]);
    expect(s.latest('p99_ms', 'node-2')).toBe(900);
  });

  it('leaves a gap for a dead member and keeps its colour', () => {
    const s = new SeriesStore();
    s.push(snapshot(100, threeNodes()));
    const nodes = threeNodes();
    nodes[1] = { ...nodes[1], status: 'dead' };
    s.push(snapshot(101, nodes));
    expect(s.data('cpu_percent')[2]).toEqual([40, null]);
    expect(s.nodeIndex('node-2')).toBe(1);
  });

  it('keeps at most its capacity, dropping the oldest', () => {
    const s = new SeriesStore(5);
    for (let t = 0; t < 12; t++) s.push(snapshot(1000 + t, [member('node-1')]));
    expect(s.times).toEqual([1007, 1008, 1009, 1010, 1011]);
    expect(s.data('throughput_rps')[1]).toHaveLength(5);
  });

  it('ignores a snapshot that is not newer (a replay after a reconnect)', () => {
    const s = new SeriesStore();
    s.push(snapshot(100, [member('node-1')]));
    const v = s.version;
    s.push(snapshot(100, [member('node-1')]));
    s.push(snapshot(99, [member('node-1')]));
    expect(s.times).toEqual([100]);
    expect(s.version).toBe(v);
  });
});
