// Number formatting shared by the panels.

export function bytes(n: number): string {
  if (!Number.isFinite(n)) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Math.abs(n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  const s = v >= 100 || i === 0 ? v.toFixed(0) : v.toFixed(1);
  return (n < 0 ? '-' : '') + s + ' ' + units[i];
}

export function num(n: number, digits = 0): string {
  if (!Number.isFinite(n)) return '–';
  if (Math.abs(n) >= 10000) return Math.round(n).toLocaleString('en-US');
  return n.toFixed(digits);
}

export function clock(iso: string): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  return d.toISOString().slice(11, 19);
}

/** A stable, well-spread colour for the i-th node. */
export function nodeColor(i: number, alpha = 1): string {
  const hue = Math.round((i * 137.508) % 360);
  return alpha < 1 ? `hsl(${hue} 70% 42% / ${alpha})` : `hsl(${hue} 70% 42%)`;
}
