// Turns figure results into the console table, the JSON lines, BENCHMARKS.md
// and the SVG chart.
import { si } from './harness.mjs';

const MiB = 1024 * 1024;

function formatRate(value, unit) {
  if (unit === 'B/s') return `${(value / MiB).toFixed(0)} MiB/s`;
  return `${si(value)} ${unit}`;
}

function spread(samples, median) {
  if (samples.length < 2) return '';
  const min = Math.min(...samples);
  const max = Math.max(...samples);
  return `±${((50 * (max - min)) / median).toFixed(0)}%`;
}

function isMet(comparison) {
  const { ratio, target } = comparison;
  return target.op === '>=' ? ratio >= target.value : ratio <= target.value;
}

/** How far a missed target is from its threshold, as a percentage of it. */
function shortfall(comparison) {
  const { ratio, target } = comparison;
  return `${((100 * Math.abs(ratio - target.value)) / target.value).toFixed(0)}%`;
}

/** What a speedup compares against: its row, or both sides when it is shown elsewhere. */
function against(comparison) {
  return comparison.note === undefined ? comparison.row : comparison.label;
}

function formatRatio(comparison) {
  if (comparison.kind === 'cost') return `cost ×${comparison.ratio.toFixed(2)}`;
  const ratio = `${comparison.ratio.toFixed(2)}×`;
  return comparison.note === undefined ? ratio : `${ratio} (this ${comparison.note})`;
}

function formatTarget(target) {
  return target === null ? '' : `${target.op === '>=' ? '≥' : '≤'} ${target.value}`;
}

/** The rows of the results table, one per subject. */
export function tableRows(results, { smoke }) {
  const rows = [];
  for (const result of results) {
    for (const [i, subject] of result.subjects.entries()) {
      const comparison = result.comparisons.find((c) => c.row === subject.name);
      let status = '';
      if (comparison?.target) status = smoke ? '(smoke)' : isMet(comparison) ? 'PASS' : 'MISS';
      rows.push({
        figure: i === 0 ? result.title : '',
        subject: subject.name,
        median: formatRate(subject.median, result.unit),
        spread: spread(subject.samples, subject.median),
        ratio: comparison ? formatRatio(comparison) : i === 0 && result.comparisons[0]?.kind === 'speedup' ? 'base' : '',
        target: comparison ? formatTarget(comparison.target) : '',
        status,
      });
    }
  }
  return rows;
}

const COLUMNS = [
  ['figure', 'Figure'],
  ['subject', 'Subject'],
  ['median', 'Median'],
  ['spread', 'Spread'],
  ['ratio', 'connpool ÷ subject'],
  ['target', 'Target'],
  ['status', 'Result'],
];

export function textTable(rows) {
  const widths = COLUMNS.map(([key, title]) => Math.max(title.length, ...rows.map((r) => r[key].length)));
  const line = (cells) => cells.map((cell, i) => cell.padEnd(widths[i])).join('  ').trimEnd();
  const out = [line(COLUMNS.map(([, title]) => title)), line(widths.map((w) => '-'.repeat(w)))];
  for (const row of rows) {
    if (row.figure !== '' && out.length > 2) out.push('');
    out.push(line(COLUMNS.map(([key]) => row[key])));
  }
  return out.join('\n');
}

export function markdownTable(rows) {
  const escape = (text) => text.replaceAll('|', '\\|');
  const out = [`| ${COLUMNS.map(([, title]) => title).join(' | ')} |`, `|${COLUMNS.map(([key]) => (key === 'median' || key === 'spread' || key === 'ratio' ? '---:' : '---')).join('|')}|`];
  for (const row of rows) {
    const cells = COLUMNS.map(([key]) => {
      const text = escape(row[key]);
      if (key === 'figure' && text) return `**${text}**`;
      if (key === 'status' && text === 'MISS') return '**MISS**';
      return text;
    });
    out.push(`| ${cells.join(' | ')} |`);
  }
  return out.join('\n');
}

/** One JSON object per figure: connpool's rate, its ratios to every other subject, and the targets. */
export function jsonLines(results, { smoke }) {
  return results.map((result) => {
    const main = result.subjects[0];
    const line = {
      figure: result.id,
      subject: main.name,
      opsPerSec: Math.round(main.median),
    };
    if (result.unit === 'B/s') line.MiBPerSec = +(main.median / MiB).toFixed(1);
    line.unit = result.unit === 'B/s' ? 'bytes/s' : result.unit;
    line.ratio = Object.fromEntries(result.comparisons.map((c) => [c.kind === 'cost' ? 'costLargeOverSmall' : against(c), +c.ratio.toFixed(3)]));
    line.subjects = Object.fromEntries(result.subjects.map((s) => [s.name, Math.round(s.median)]));
    line.samples = result.subjects[0].samples.length;
    const targets = result.comparisons.filter((c) => c.target);
    if (targets.length > 0) {
      line.targets = targets.map((c) => ({
        vs: c.kind === 'cost' ? 'cost ratio' : against(c),
        op: c.target.op,
        value: c.target.value,
        ratio: +c.ratio.toFixed(3),
        result: smoke ? 'not asserted' : isMet(c) ? 'PASS' : 'MISS',
      }));
    }
    if (result.notes && Object.keys(result.notes).length > 0) line.notes = result.notes;
    return JSON.stringify(line);
  });
}

export function misses(results) {
  const out = [];
  for (const result of results) {
    for (const c of result.comparisons) {
      if (c.target && !isMet(c)) {
        out.push(`${result.title}: ${c.kind === 'cost' ? `cost ratio ${c.ratio.toFixed(2)}` : `${c.label} = ${c.ratio.toFixed(2)}`} vs target ${formatTarget(c.target)} (off by ${shortfall(c)})`);
      }
    }
  }
  return out;
}

function xml(text) {
  return String(text).replaceAll('&', '&amp;').replaceAll('<', '&lt;').replaceAll('>', '&gt;').replaceAll('"', '&quot;');
}

/** A horizontal bar per target: the measured ratio, a dashed line at the threshold. */
export function svgChart(results, { smoke, subtitle }) {
  const bars = [];
  for (const result of results) {
    for (const c of result.comparisons) {
      if (!c.target) continue;
      const name =
        c.kind === 'cost'
          ? `${result.title.replace(/^e\. /, '')} ${result.subjects.map((x) => x.name.replace(/^connpool @ /, '').split(' ')[0]).join(' → ')}`
          : `${result.id} vs ${against(c)}`;
      bars.push({ name, ratio: c.ratio, target: c.target, met: isMet(c), kind: c.kind });
    }
  }
  // Room on the left for the longest label (about 6.5 px a character at 12 px).
  const left = Math.max(270, 24 + Math.ceil(6.5 * Math.max(0, ...bars.map((b) => b.name.length))));
  const barWidth = 430;
  const width = left + barWidth + 200;
  const rowHeight = 26;
  const top = 64;
  const height = top + bars.length * rowHeight + 40;
  const peak = Math.max(1.5, ...bars.map((b) => Math.max(b.ratio, b.target.value)));
  const axisMax = Math.min(4, Math.ceil(peak * 1.1 * 2) / 2);
  const x = (value) => left + (Math.min(value, axisMax) / axisMax) * barWidth;
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif" font-size="12">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="22" font-size="15" font-weight="bold">connpool: measured ratio per target${smoke ? ' (smoke run: not meaningful)' : ''}</text>`,
    `<text x="16" y="40" fill="#555">${xml(subtitle)}</text>`,
    `<text x="16" y="56" fill="#555">Speed ratios: connpool ÷ anchor, higher is better. Scale rows: cost at large ÷ cost at small, lower is better. Dashed line: target.</text>`,
  ];
  for (let tick = 0; tick <= axisMax + 1e-9; tick += axisMax > 2 ? 1 : 0.5) {
    const tx = x(tick);
    parts.push(`<line x1="${tx}" y1="${top - 4}" x2="${tx}" y2="${top + bars.length * rowHeight}" stroke="#e3e3e3"/>`);
    parts.push(`<text x="${tx}" y="${top + bars.length * rowHeight + 16}" text-anchor="middle" fill="#555">${tick}×</text>`);
  }
  for (const [i, bar] of bars.entries()) {
    const y = top + i * rowHeight;
    const colour = smoke ? '#9e9e9e' : bar.met ? '#2e7d32' : '#c62828';
    const end = x(bar.ratio);
    const clipped = bar.ratio > axisMax;
    parts.push(`<text x="${left - 8}" y="${y + 16}" text-anchor="end">${xml(bar.name)}</text>`);
    parts.push(`<rect x="${left}" y="${y + 5}" width="${Math.max(1, end - left)}" height="${rowHeight - 10}" fill="${colour}" rx="2"/>`);
    if (clipped) parts.push(`<text x="${end - 4}" y="${y + 16}" text-anchor="end" fill="#fff" font-weight="bold">»</text>`);
    const tx = x(bar.target.value);
    parts.push(`<line x1="${tx}" y1="${y + 1}" x2="${tx}" y2="${y + rowHeight - 1}" stroke="#111" stroke-width="2" stroke-dasharray="3,2"/>`);
    const verdict = smoke ? '' : bar.met ? ' PASS' : ' MISS';
    parts.push(`<text x="${left + barWidth + 10}" y="${y + 16}" fill="${colour}" font-weight="bold">${bar.ratio.toFixed(2)}×${verdict}</text>`);
    parts.push(`<text x="${left + barWidth + 90}" y="${y + 16}" fill="#555">target ${xml(formatTarget(bar.target))}</text>`);
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

const METHOD = `## What is measured

Every rate is the median of the interleaved repetitions (A, B, C, A, B, C, ...)
after one untimed warm-up run per subject. Before each sample the harness lets
the event loop turn once and forces a full GC; inside a sample, the sequential
loops (a, e) never yield to the event loop, as a tight \`await\` loop would not.
Spread is half the min–max range, relative to the median. A ratio is the median,
over the repetitions, of the ratio of the two subjects' samples in the same
repetition (they ran back to back), so it can differ a little from the ratio of
the two medians. The peer of every
network figure is an echo/sink server in a child process (\`bench/servers.mjs\`),
so it never shares the measuring event loop. Ratios compare subjects measured in
the same run; absolute rates on a shared 2-core machine are noisy, ratios less so.

- **a. checkout**: one caller, sequential. connpool: \`get()\` + \`put()\` of an
  idle socket (one \`ConnResource\` on a private \`new ResourcePool({ max: 10 })\`).
  generic-pool and tarn: \`acquire()\` + \`release()\` of a ready resource (max 10).
  p-limit: bare \`limit(async () => {})\` (concurrency 10).
- **b. contended**: 1,000 concurrent callers share 100,000 operations over 10
  slots. connpool: 1,000 handles on one pool with max 10 (so 10 sockets), each op
  \`get()\` → \`put()\`; the anchors as in a.
  *Held across an await*: the same, but each caller holds its slot across one
  \`await Promise.resolve()\` before giving it back (connpool: \`get()\`, await,
  \`put()\`; generic-pool and tarn: acquire, await, release; p-limit:
  \`limit(async () => { await Promise.resolve() })\`), so a slot always frees in
  a later microtask than the one that took it, as in real use.
- **c. round trips**: 32 bytes written, 32 echoed bytes read (\`'data'\` events),
  on loopback. connpool: \`get()\`, round trip, \`put()\` each time; raw kept-open:
  one \`net.Socket\` (same \`noDelay\`/keep-alive as \`netDialer\`); fresh:
  \`net.connect\` + round trip + \`destroy()\` each time. TLS 1.3 (ECDSA P-256 certs
  made at run time with the openssl CLI): connpool through \`tlsDialer({ ca })\`,
  a raw kept-open \`tls.connect\`, a fresh \`tls.connect\` (full handshake), and a
  fresh one resuming the previous connection's session (\`session\` option).
  Each repetition runs in 10 slices, interleaved slice by slice, so that the
  subjects share the machine's (fast-changing) weather.
- **d. throughput**: 512 MiB per sample in 64 KiB writes (honouring
  \`write()\`'s backpressure), to a sink that acknowledges each transfer (up),
  and from a source (down), through a \`PooledConn\` and through a raw kept-open
  socket. A sample is 8 transfers of 64 MiB, interleaved with the other
  subject's (one \`get()\`/\`put()\` per connpool transfer).
- **e. scale**: the cost of connpool's sequential \`get()\` + \`put()\` (round-robin
  over 10 handles, or 1 for a single key) in a small and a large pool state,
  interleaved; the ratio is time per op at large ÷ at small.
  *handles*: 10 vs 100,000 handles on one key (max 10), all used once, the 10
  measured spread evenly among them. *keys*: 1 vs 10,000 keys, each a custom
  dialer \`{ key: 'k' + i, dial: netDialer().dial }\` with one idle socket (so the
  large state also holds 10,000 sockets). *aborted waiters*: 100,000 \`get()\`s
  queued while all 10 slots are held, then all aborted, then the slots returned;
  the handles and signals stay reachable while measuring. *idle sockets*: 0 vs
  10,000 idle sockets on the measured key.
- **f. HTTP, 1 origin**: GETs to a \`node:http\` server in the child (body
  \`ok\`, keep-alive, Node's default 5 s idle timeout), each response read to
  its end: connpool's \`HttpAgent\` (on a private \`ResourcePool({ max: 100 })\`)
  against \`new http.Agent({ keepAlive: true })\`, both through \`http.get\`; and
  \`createDispatcher()\` (its own pool of 100) against \`new undici.Agent()\`,
  both through \`undici.request\` and \`body.text()\`. One request at a time,
  then 50 callers at once; each repetition in 10 slices, and every other slice
  runs the subjects in reverse order.
- **g. HTTP fan-out**: 10,000 GETs fired at once, request i to origin
  i % 1,000, each origin a loopback address 127.0.x.y of one server in the
  child listening on 0.0.0.0 (idle connections kept 30 s), with a cap of 100
  connections: \`HttpAgent\` and \`createDispatcher()\` on
  \`ResourcePool({ max: 100 })\`, \`http.Agent({ keepAlive: true, maxTotalSockets: 100 })\`,
  and \`undici.Agent({ connections: 1 })\`: undici has no cap across origins,
  its \`connections\` is per origin, and 1 is the tightest cap it can express
  (100 over 1,000 origins is 0.1 each), so it may open one socket per origin,
  1,000 at once. Each run starts from a new agent (and pool) and closes it
  afterwards, untimed; the rate is 10,000 ÷ the time to finish them all. The
  notes give, for each subject's last run, the most connections the server
  had open at once (\`peakOpen\`), the connections it accepted, and connpool's
  dials, evictions and reuses. No target: which is faster is the finding.
- **h. fresh dials**: a fresh TCP connection and one 32-byte echo round trip.
  *Sequential*: connpool \`get()\` (which dials: the previous \`close()\` left
  nothing idle), round trip, \`await close()\`, against \`net.connect\` (with
  \`netDialer\`'s \`noDelay\` and keep-alive options), round trip,
  \`destroy()\`; in 16 slices, alternating order. *Round-robin*: 200 callers at
  once over 300 echo servers in the child, in turn, under a cap of 200: connpool
  \`get()\`, round trip, \`put()\` through \`ResourcePool({ max: 200 })\` (a handle
  per server and caller at a time), so that every \`get()\` finds the pool full
  of other servers' sockets and first evicts the least recently used idle one
  (the notes count dials, evictions and reuses), against plain connects
  (connect, round trip, \`destroy()\`) by 200 callers.
- **i. threads**: *checkout*: as a., one caller, on the global pool (whose
  budget is shared with every worker thread, in shared memory) against a
  private pool (a budget of its own): the cost of sharing, target >= 0.83
  (within 1.2x). *Contended across threads*: in a child process under
  \`ulimit -n 256\` (so the global pool's max is 200), 4 threads (the main
  thread and 3 workers) × 100 callers, each \`get()\`, \`await
  Promise.resolve()\`, \`put()\` on the global pool, against 400 callers in one
  thread on a private pool of 200. Idle sockets stay in their thread, so a
  thread whose callers wait while another holds idle sockets asks it to close
  one (the notes count dials, reuses and evictions). No target: the figure is
  what sharing the budget between threads costs under contention.
`;

export function markdown({ results, smoke, machine, command, reps, seconds, jsonText, chartPath }) {
  const missed = misses(results);
  const rows = tableRows(results, { smoke });
  return `# Benchmarks

Written by \`bench/run.mjs\`; do not edit by hand (the next run rewrites it).

| | |
|---|---|
| Machine | ${machine.cpu} × ${machine.cores} cores, ${machine.memoryGiB} GiB, ${machine.os} |
| Node.js | ${machine.node} (V8 ${machine.v8}) |
| Date | ${machine.date} |
| Command | \`${command}\` |
| Repetitions | ${reps} per subject, interleaved, median reported |
| Duration | ${seconds.toFixed(0)} s |
| connpool | ${machine.connpool} (as built in dist/) |
| Anchors | generic-pool ${machine.versions['generic-pool']}, tarn ${machine.versions.tarn}, p-limit ${machine.versions['p-limit']}, undici ${machine.versions.undici}, Node's http.Agent and net.connect |
${smoke ? '\n**Smoke run**: tiny sizes, one repetition; the targets are not asserted and the numbers mean nothing.\n' : ''}
## Results

${markdownTable(rows)}

*connpool ÷ subject*: connpool's rate over the subject's, higher is better (\`this ÷ X\`: this row's rate over X's, both measured in the same slices).
*cost ×*: time per operation at the large size over the small one, lower is better.

![Measured ratio per target](${chartPath})

${smoke ? '' : missed.length === 0 ? 'Every target is met.\n' : `Targets missed:\n\n${missed.map((m) => `- ${m}`).join('\n')}\n`}
<details><summary>JSON lines</summary>

\`\`\`json
${jsonText}
\`\`\`

</details>

${METHOD}
## Running it

\`\`\`sh
npm run bench                 # build, then the full run (6 to 9 minutes on this 2-core machine); writes its report to a temp directory
npm run bench -- --write      # the same, and rewrites this file and bench/results.svg
node bench/run.mjs --smoke    # tiny sizes, one repetition, for CI (also BENCH_SMOKE=1); about 10 s
node bench/run.mjs --only checkout,contended,contended-await --reps 7   # figures: checkout, contended, contended-await, roundtrip, tlsdials, throughput, scale, http, fanout, dials, threads
node bench/profile.mjs        # CPU and allocation profiles of the checkout and contended paths (--scenario contended-await,rtt-tls,upload,http-agent,fresh-dial,evict-dial,...; --dist DIR for a patched build)
node bench/primitives.mjs     # what a Duplex, a WeakRef, a FinalizationRegistry entry, a p-limit call cost here
\`\`\`
`;
}
