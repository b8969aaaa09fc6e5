// One live time-series chart: one metric, one line per node, and an
// optional limit drawn as a dashed red line (the SLO, the CPU or memory
// limit). uPlot draws to a canvas and redraws from the store's columns in
// place, which keeps 50 nodes × 5 charts cheap at one update a second.

import { useEffect, useRef } from 'react';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { nodeColor } from '../format';
import type { Metric, SeriesStore } from '../series';

export interface ChartProps {
  title: string;
  metric: Metric;
  store: SeriesStore;
  /** The store's version: a new one redraws. */
  version: number;
  unit?: string;
  /** A limit to draw across the chart. */
  limit?: number;
  limitLabel?: string;
  height?: number;
  /** A node to pick out: its line is drawn bold and the others faded. */
  focus?: string | null;
}

const LEGEND_MAX_NODES = 8;

function limitPlugin(get: () => number | undefined): uPlot.Plugin {
  return {
    hooks: {
      draw: (u: uPlot) => {
        const v = get();
        if (v === undefined || !Number.isFinite(v)) return;
        const y = u.valToPos(v, 'y', true);
        if (y < u.bbox.top || y > u.bbox.top + u.bbox.height) return;
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = '#d62728';
        ctx.lineWidth = 2 * uPlot.pxRatio;
        ctx.setLineDash([8 * uPlot.pxRatio, 6 * uPlot.pxRatio]);
        ctx.beginPath();
        ctx.moveTo(u.bbox.left, y);
        ctx.lineTo(u.bbox.left + u.bbox.width, y);
        ctx.stroke();
        ctx.restore();
      },
    },
  };
}

export function Chart({ title, metric, store, version, unit, limit, limitLabel, height = 180, focus = null }: ChartProps) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const built = useRef({ nodes: -1, focus: null as string | null });
  const limitRef = useRef(limit);
  limitRef.current = limit;

  // (Re)build the chart when the set of nodes or the picked node changes;
  // that is rare. Otherwise only the data is replaced.
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    if (plot.current && built.current.nodes === store.nodes.length && built.current.focus === focus) {
      plot.current.setData(store.data(metric));
      return;
    }
    plot.current?.destroy();
    built.current = { nodes: store.nodes.length, focus };
    const picked = focus !== null && store.nodeIndex(focus) >= 0;
    const opts: uPlot.Options = {
      width: Math.max(el.clientWidth, 200),
      height,
      legend: { show: store.nodes.length <= LEGEND_MAX_NODES, live: false },
      cursor: { drag: { x: false, y: false }, focus: { prox: 16 } },
      focus: { alpha: 0.3 },
      scales: {
        x: { time: true },
        y: {
          range: (_u, min, max) => {
            const l = limitRef.current;
            const hi = Math.max(max ?? 0, l !== undefined && Number.isFinite(l) ? l * 1.1 : 0, 1);
            return [Math.min(0, min ?? 0), hi * 1.05];
          },
        },
      },
      axes: [{}, { size: 60, values: (_u, vals) => vals.map((v) => compact(v)) }],
      series: [
        {},
        ...store.nodes.map((name, i) => ({
          label: name,
          stroke: picked && name !== focus ? nodeColor(i, 0.18) : nodeColor(i),
          width: picked && name === focus ? 2.5 : store.nodes.length > 20 ? 1 : 1.5,
          points: { show: false },
          spanGaps: false,
        })),
      ],
      plugins: [limitPlugin(() => limitRef.current)],
    };
    plot.current = new uPlot(opts, store.data(metric), el);
  }, [version, store, metric, height, focus]);

  // Follow the container's width.
  useEffect(() => {
    const el = box.current;
    if (!el || typeof ResizeObserver === 'undefined') return;
    const ro = new ResizeObserver(() => {
      if (plot.current) plot.current.setSize({ width: Math.max(el.clientWidth, 200), height });
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, [height]);

  useEffect(
    () => () => {
      plot.current?.destroy();
      plot.current = null;
    },
    [],
  );

  const points = store.times.length;
  return (
    <figure className="chart" data-metric={metric} data-points={points}>
      <figcaption>
        <span className="chart-title">{title}</span>
        {unit && <span className="chart-unit"> ({unit})</span>}
        {limit !== undefined && (
          <span className="chart-limit">
            {' '}
            — {limitLabel ?? 'limit'} {compact(limit)}
          </span>
        )}
      </figcaption>
      <div ref={box} className="chart-plot" />
    </figure>
  );
}

function compact(v: number): string {
  const a = Math.abs(v);
  if (a >= 1e9) return (v / 1e9).toFixed(1) + 'G';
  if (a >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (a >= 1e4) return (v / 1e3).toFixed(0) + 'k';
  if (a >= 1e3) return (v / 1e3).toFixed(1) + 'k';
  return Number.isInteger(v) ? String(v) : v.toFixed(1);
}
