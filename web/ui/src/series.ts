// SeriesStore keeps the last minutes of each member's health, one point per
// snapshot, in the column layout uPlot draws from: one time column and, per
// metric, one column per node. It lives outside React so that a chart can
// redraw from it without copying.

import type { Snapshot } from './api';

export type Metric = 'batch_size' | 'throughput_rps' | 'p99_ms' | 'cpu_percent' | 'mem_percent';
export const METRICS: Metric[] = ['batch_size', 'throughput_rps', 'p99_ms', 'cpu_percent', 'mem_percent'];

export class SeriesStore {
  /** Seconds since the epoch, oldest first. */
  readonly times: number[] = [];
  /** Node names in order of first appearance: a node keeps its column and colour. */
  readonly nodes: string[] = [];
  private readonly columns = new Map<Metric, (number | null)[][]>();
  private readonly index = new Map<string, number>();
  /** Bumped on every change; charts compare it to know when to redraw. */
  version = 0;

  constructor(readonly capacity = 300) {
    for (const m of METRICS) this.columns.set(m, []);
  }

  /** The column (and colour) index of a node, or -1. */
  nodeIndex(name: string): number {
    return this.index.get(name) ?? -1;
  }

  /** Adds one point per member from a snapshot; dead or gone members get a gap. */
  push(s: Snapshot): void {
    const t = Date.parse(s.time) / 1000;
    if (!Number.isFinite(t)) return;
    const last = this.times[this.times.length - 1];
    if (last !== undefined && t <= last) return; // a replay after a reconnect
    for (const m of s.members) {
      if (m.name && !this.index.has(m.name)) this.addNode(m.name);
    }
    this.times.push(t);
    const live = new Map(s.members.filter((m) => m.status === 'alive' || m.status === 'suspect').map((m) => [m.name, m]));
    for (const metric of METRICS) {
      const cols = this.columns.get(metric)!;
      this.nodes.forEach((name, i) => {
        const m = live.get(name);
        const v = m ? m.health[metric] : null;
        cols[i].push(typeof v === 'number' && Number.isFinite(v) ? v : null);
      });
    }
    if (this.times.length > this.capacity) {
      this.times.shift();
      for (const cols of this.columns.values()) for (const c of cols) c.shift();
    }
    this.version++;
  }

  private addNode(name: string): void {
    this.index.set(name, this.nodes.length);
    this.nodes.push(name);
    for (const cols of this.columns.values()) cols.push(this.times.map(() => null));
  }

  /** uPlot's data for a metric: [times, node 0, node 1, ...]. */
  data(metric: Metric): [number[], ...(number | null)[][]] {
    return [this.times, ...this.columns.get(metric)!];
  }

  /** The latest value of a metric for a node, or null. */
  latest(metric: Metric, name: string): number | null {
    const i = this.nodeIndex(name);
    if (i < 0) return null;
    const col = this.columns.get(metric)![i];
    return col.length ? col[col.length - 1] : null;
  }
}
