// Measures the dashboard at 50 nodes: it serves the built bundle (dist/)
// with a synthetic cluster of N members on /api/v1/events (one snapshot a
// second, a few decisions each), loads it in headless Chromium, lets the
// charts fill with the full five minutes of points, then records for 20 s
// how long the main thread is busy and the longest gap between frames.
//
//   node e2e/perf50.mjs [nodes=50] [seconds=20]   (SHOT=file.png also takes a screenshot)
//
// A measurement, not a test: it prints figures and asserts nothing.

import { createServer } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, '..', 'dist');
const N = Number(process.argv[2] || 50);
const SECONDS = Number(process.argv[3] || 20);
const HISTORY = 300; // the charts' capacity: measure them full

const names = Array.from({ length: N }, (_, i) => `node-${i + 1}`);
const limits = {
  max_batch_size: 10000, cluster_budget_bytes: 256 << 20, node_floor_bytes: 4 << 20, max_growth_percent: 50,
  max_growing_nodes: 2, slo_ms: 500, cpu_limit_percent: 85, mem_limit_percent: 85, epoch_ms: 2000, lease_ttl_ms: 6000,
};

function snapshot(t) {
  const members = names.map((name, i) => {
    const w = Math.sin(t / 20 + i) * 0.5 + 0.5;
    return {
      id: 'id' + i, name, status: 'alive', raft_role: i === 0 ? 'leader' : i < 5 ? 'voter' : 'nonvoter',
      http_addr: '127.0.0.1:' + (9000 + i),
      health: { batch_size: Math.round(100 + 900 * w), throughput_rps: 1000 + 3000 * w, p99_ms: 100 + 500 * w,
        cpu_percent: 20 + 70 * w, mem_percent: 30 + 10 * w, rss_bytes: 80 << 20, queue_depth: Math.round(50 * w),
        breaker: w > 0.95 ? 'open' : 'closed', want_bytes: 8 << 20, has_bytes: Math.round((4 << 20) * w) },
      budget: { grant_bytes: 5 << 20, want_bytes: 8 << 20, has_bytes: Math.round((4 << 20) * w) },
    };
  });
  return { cluster_id: 'perf', leader: { id: 'id0', name: 'node-1', http_addr: '127.0.0.1:9000' }, term: 2, members, limits,
    epoch: t, learning: false, budget_bytes: 256 << 20, granted_bytes: N * (5 << 20), floor_bytes: 4 << 20,
    time: new Date(t * 1000).toISOString(), served_by: 'node-1' };
}

function decision(t, i) {
  return { time: new Date(t * 1000 + i).toISOString(), node: names[i % N], controller: 'gradient', old_size: 100, new_size: 125,
    reason: 'gradient', arrival_rps: 1000, throughput_rps: 990, goodput_rps: 980, p99_ms: 200, cpu_percent: 40,
    mem_percent: 30, queue_depth: 3, breaker: 'closed' };
}

const start = Math.floor(Date.now() / 1000) - HISTORY;
const server = createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/api/v1/events') {
    res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
    // Replay five minutes at once so the charts are full, then go live.
    let t = start;
    for (; t < start + HISTORY; t++) res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot(t))}\n\n`);
    const timer = setInterval(() => {
      res.write(`event: snapshot\ndata: ${JSON.stringify(snapshot(t))}\n\n`);
      for (let i = 0; i < Math.ceil(N / 5); i++) res.write(`event: decision\ndata: ${JSON.stringify(decision(t, i))}\n\n`);
      t++;
    }, 1000);
    req.on('close', () => clearInterval(timer));
    return;
  }
  if (url.pathname === '/api/v1/decisions') {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify({ decisions: Array.from({ length: 200 }, (_, i) => decision(start + HISTORY - i, i)), unreachable: [] }));
    return;
  }
  const file = path.join(dist, url.pathname === '/' ? 'index.html' : path.normalize(url.pathname));
  if (!file.startsWith(dist) || !existsSync(file)) {
    res.writeHead(404).end();
    return;
  }
  const type = file.endsWith('.js') ? 'text/javascript' : file.endsWith('.css') ? 'text/css' : 'text/html';
  res.writeHead(200, { 'Content-Type': type }).end(readFileSync(file));
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}/`;

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium', headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
const page = await browser.newPage({ viewport: { width: 1600, height: 1200 } });
const logs = [];
page.on('console', (m) => logs.push(m.text()));
const cdp = await page.context().newCDPSession(page);
await cdp.send('Performance.enable');
await page.goto(base);
await page.waitForFunction((n) => document.querySelectorAll('table.members tbody tr').length === n, N, { timeout: 60_000 });
await page.waitForFunction((h) => Number(document.querySelector('figure[data-metric="p99_ms"]')?.dataset.points) >= h, HISTORY, { timeout: 60_000 });

const metric = async () => Object.fromEntries((await cdp.send('Performance.getMetrics')).metrics.map((m) => [m.name, m.value]));
const m0 = await metric();
const frames = await page.evaluate(async (secs) => {
  const longTasks = [];
  new PerformanceObserver((l) => l.getEntries().forEach((e) => longTasks.push(e.duration))).observe({ type: 'longtask', buffered: false });
  let last = performance.now();
  let worst = 0;
  let count = 0;
  const end = last + secs * 1000;
  await new Promise((resolve) => {
    const step = (now) => {
      worst = Math.max(worst, now - last);
      last = now;
      count++;
      if (now < end) requestAnimationFrame(step);
      else resolve();
    };
    requestAnimationFrame(step);
  });
  return { frames: count, worstFrameGapMs: Math.round(worst), longTasks: longTasks.length, longestTaskMs: Math.round(Math.max(0, ...longTasks)) };
}, SECONDS);
const m1 = await metric();
const busy = (k) => Math.round(((m1[k] - m0[k]) / SECONDS) * 1000);
console.log(JSON.stringify({
  nodes: N, seconds: SECONDS, points_per_series: HISTORY,
  ...frames,
  fps: Math.round(frames.frames / SECONDS),
  script_ms_per_s: busy('ScriptDuration'), layout_ms_per_s: busy('LayoutDuration'), style_ms_per_s: busy('RecalcStyleDuration'),
  task_ms_per_s: busy('TaskDuration'), js_heap_mb: Math.round(m1.JSHeapUsedSize / 1048576), console_messages: logs.length,
}));
if (process.env.SHOT) await page.screenshot({ path: process.env.SHOT, fullPage: true });
await browser.close();
server.close();
