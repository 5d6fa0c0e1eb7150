import { appendFileSync } from 'node:fs';

/**
 * Records a figure a test measured (peaks, bytes per operation, outcomes).
 * A passing run stays quiet: figures are printed only with
 * `CONNPOOL_FIGURES=1`, or appended to the file `CONNPOOL_FIGURES` names.
 */
export function reportFigure(line: string): void {
  const target = process.env.CONNPOOL_FIGURES;
  if (target === undefined || target === '' || target === '0') return;
  if (target === '1') process.stdout.write(`${line}\n`);
  else appendFileSync(target, `${line}\n`);
}
