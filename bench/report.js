// Renders RESULT lines (one JSON object per line) as a Markdown table and an
// SVG chart. Usage: node report.js results.jsonl results.md results.svg
'use strict';
const fs = require('fs');

const [inPath, mdPath, svgPath] = process.argv.slice(2);
const rows = fs.readFileSync(inPath, 'utf8').split('\n').filter(Boolean)
  .map((l) => JSON.parse(l));
// Anchors: node, nginx and limit first, then any other figure a bench
// reported (e.g. node_none: Node's cluster under SCHED_NONE).
const known = ['node', 'nginx', 'limit'];
const extra = [];
for (const r of rows) {
  for (const k of Object.keys(r)) {
    if (typeof r[k] === 'number' && k !== 'herd' && !k.startsWith('herd_vs_') &&
        !known.includes(k) && !extra.includes(k)) {
      extra.push(k);
    }
  }
}
const anchors = [...known, ...extra];

function fmt(v) {
  if (v === undefined || v === null) return '';
  if (Math.abs(v) >= 100) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toPrecision(3);
}

// A ratio oriented so that > 1 always means "herd is better".
function advantage(r, a) {
  if (!(r[a] > 0) || !(r.herd > 0)) return null;
  return r.better === 'lower' ? r[a] / r.herd : r.herd / r[a];
}

let md = '# Benchmark results\n\n';
md += 'Produced by `make bench`: every row was measured in one run with herd ' +
  'and its anchors alternating. "x" columns are herd\'s advantage ' +
  '(> 1 is better for herd, whichever way the metric goes).\n\n';
md += '| bench | metric | unit | better | herd | ' + anchors.join(' | ') +
  ' | ' + anchors.map((a) => 'x ' + a).join(' | ') + ' |\n';
md += '|---|---|---|---|---:|' + anchors.map(() => '---:|').join('') +
  anchors.map(() => '---:|').join('') + '\n';
for (const r of rows) {
  const cells = [r.bench, r.metric, r.unit, r.better, fmt(r.herd)];
  for (const a of anchors) cells.push(fmt(r[a]));
  for (const a of anchors) {
    const x = advantage(r, a);
    cells.push(x === null ? '' : x.toFixed(2) + 'x');
  }
  md += '| ' + cells.join(' | ') + ' |\n';
}
fs.writeFileSync(mdPath, md);

// Chart: one group per metric; each bar is a system's figure relative to the
// best one in its group, so longer is always better.
const colors = { herd: '#2b7a3d', node: '#3c6fb6', nginx: '#b8642a',
  limit: '#8a8a8a', node_none: '#7fa3d6', pm2: '#8e4fa8' };
const systems = ['herd', ...anchors];
const barH = 14, gap = 4, groupGap = 18, left = 330, width = 820;
const plotW = width - left - 90;
let y = 50;
let body = '';
// The chart keeps the headline figures; CPU, latency percentiles, spread and
// failure counts (a bar cannot show 0 against 1263) stay in the table.
const charted = rows.filter(
  (r) => !/cpu|p99|busiest|anon|light_|failed/.test(r.metric));
for (const r of charted) {
  const present = systems.filter((s) => r[s] > 0);
  const score = (s) => (r.better === 'lower' ? 1 / r[s] : r[s]);
  const best = Math.max(...present.map(score));
  body += `<text x="10" y="${y + 11}" font-size="12" font-weight="bold">` +
    `${esc(r.bench)}: ${esc(r.metric)}</text>`;
  body += `<text x="10" y="${y + 25}" font-size="10" fill="#555">` +
    `${esc(r.unit)}, ${r.better} is better</text>`;
  let by = y;
  for (const s of present) {
    const w = Math.max(1, (score(s) / best) * plotW);
    body += `<rect x="${left}" y="${by}" width="${w.toFixed(1)}" ` +
      `height="${barH}" fill="${colors[s] || '#b0b0b0'}"/>`;
    body += `<text x="${left - 6}" y="${by + 11}" font-size="11" ` +
      `text-anchor="end">${s}</text>`;
    body += `<text x="${(left + w + 4).toFixed(1)}" y="${by + 11}" ` +
      `font-size="11">${esc(fmt(r[s]))}</text>`;
    by += barH + gap;
  }
  y = Math.max(by, y + 32) + groupGap;
}
const height = y + 10;
const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" ` +
  `height="${height}" font-family="sans-serif">` +
  `<rect width="100%" height="100%" fill="white"/>` +
  `<text x="10" y="24" font-size="15" font-weight="bold">herd vs Node.js, ` +
  `nginx, PM2 and the raw syscall limit (bar length: relative, longer is ` +
  `better)` +
  `</text>${body}</svg>\n`;
fs.writeFileSync(svgPath, svg);

function esc(s) {
  return String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
}
